"""The bucket's layout (ARCHITECTURE.md, "Registry layout" and "Batch layout") and what S3's errors mean,
checked against moto's real answers."""

import os
from fnmatch import fnmatchcase

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from maas_core.shared import layout
from maas_core.shared.batch_io import BatchFileError
from maas_core.shared.errors import InvalidName
from maas_core.shared.layout import S3Outcome, s3_outcome

BUCKET = os.environ["MODEL_BUCKET"]
V1 = "20260101T120000Z-0123abcd"


def test_registry_keys_are_the_documented_ones_and_parse_back():
    assert layout.version_prefix("digits", V1) == f"models/digits/{V1}/"
    assert layout.model_key("digits", V1) == f"models/digits/{V1}/model.onnx"
    assert layout.manifest_key("digits", V1) == f"models/digits/{V1}/manifest.json"
    assert layout.alias_key("digits", "production") == "models/digits/aliases/production.json"
    assert layout.history_key("digits", "production", "e.json") == "models/digits/history/production/e.json"
    assert layout.version_of("digits", layout.manifest_key("digits", V1)) == V1
    assert layout.alias_of("digits", layout.alias_key("digits", "canary")) == "canary"
    # Only a manifest makes a version; another model's keys, or a nested one, are not this model's.
    for key in (
        layout.model_key("digits", V1),
        layout.manifest_key("digitsx", V1),
        f"models/digits/x/{V1}/manifest.json",
    ):
        assert layout.version_of("digits", key) is None
    for key in ("models/digits/aliases/Prod.json", "models/digits/aliases/production", "models/other/aliases/p.json"):
        assert layout.alias_of("digits", key) is None


@pytest.mark.parametrize("bad", ["..", "a/b", "digits\n", "Digits", "", "-a"])
def test_no_key_is_built_from_a_name_that_could_leave_its_prefix(bad):
    for build in (
        lambda: layout.model_key(bad, V1),
        lambda: layout.manifest_key("digits", bad),
        lambda: layout.alias_key("digits", bad),
        lambda: layout.history_prefix(bad, "production"),
        lambda: layout.input_key(bad, "production", "x.jsonl"),
        lambda: layout.input_key("digits", bad, "x.jsonl"),
    ):
        with pytest.raises(InvalidName):
            build()


def test_a_batch_key_parses_back_to_where_its_outputs_go():
    key = layout.input_key("digits", "production", "2026/day.jsonl")
    assert key == "batch/in/digits/production/2026/day.jsonl"
    batch = layout.parse_key(key, '"abc-1"')
    out = "batch/out/digits/production/2026/day.jsonl/abc-1/"
    assert (batch.model, batch.ref, batch.path, batch.out_prefix) == ("digits", "production", "2026/day.jsonl", out)
    assert batch.summary_key == out + "summary.json"
    assert batch.part_prefix(3) == out + "parts/00003."
    assert layout.failure_prefix(key, '"abc-1"') == out
    job = layout.job_input_key("digits", V1, "0" * 32, "csv")
    assert layout.parse_key(job, "e").path == f"jobs/{'0' * 32}/input.csv"
    assert layout.job_key("0" * 32) == f"batch/jobs/{'0' * 32}.json"


@pytest.mark.parametrize(
    "key", ["batch/out/digits/production/x.jsonl", "batch/in/digits/x.jsonl", "batch/in/digits/production/../x.jsonl"]
)
def test_a_key_outside_the_batch_layout_is_refused_and_its_failure_goes_under_rejected(key):
    with pytest.raises(BatchFileError):
        layout.parse_key(key, "abc")
    prefix = layout.failure_prefix(key, "abc")
    assert prefix.startswith(layout.REJECTED_PREFIX) and prefix == layout.failure_prefix(key, '"abc"')


def test_training_keys():
    assert layout.training_source_key("job-1") == "training-jobs/job-1/source/sourcedir.tar.gz"
    assert layout.training_checkpoints_prefix("job-1") == "training-jobs/job-1/checkpoints/"
    assert layout.training_data_prefix("job-1", "train") == "training-data/job-1/train/"


def _error(call) -> BaseException:
    with pytest.raises(Exception) as caught:
        call()
    return caught.value


def test_every_s3_answer_means_one_thing(s3):
    etag = s3.put_object(Bucket=BUCKET, Key="k", Body=b"x")["ETag"]
    assert s3_outcome(_error(lambda: s3.get_object(Bucket=BUCKET, Key="absent"))) is S3Outcome.MISSING  # NoSuchKey
    assert s3_outcome(_error(lambda: s3.head_object(Bucket=BUCKET, Key="absent"))) is S3Outcome.MISSING  # bare 404
    lost = _error(lambda: s3.put_object(Bucket=BUCKET, Key="k", Body=b"y", IfNoneMatch="*"))
    assert s3_outcome(lost) is S3Outcome.PRECONDITION_FAILED
    stale = _error(lambda: s3.get_object(Bucket=BUCKET, Key="k", IfMatch='"0"'))
    assert s3_outcome(stale) is S3Outcome.PRECONDITION_FAILED
    same = _error(lambda: s3.get_object(Bucket=BUCKET, Key="k", IfNoneMatch=etag))
    assert s3_outcome(same) is S3Outcome.NOT_MODIFIED
    # A bucket that is not there is a broken deployment (503), never a 404 that blames the request.
    no_bucket = _error(lambda: s3.get_object(Bucket="no-such-bucket-here", Key="k"))
    assert isinstance(no_bucket, ClientError) and s3_outcome(no_bucket) is S3Outcome.UNAVAILABLE
    assert s3_outcome(ClientError({"Error": {"Code": "409"}}, "PutObject")) is S3Outcome.PRECONDITION_FAILED
    assert s3_outcome(ClientError({"Error": {"Code": "ConditionalRequestConflict"}}, "PutObject")) is (
        S3Outcome.PRECONDITION_FAILED
    )


def test_s3_that_cannot_be_reached_is_unavailable():
    client = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}, connect_timeout=1),
    )
    failed = _error(lambda: client.get_object(Bucket=BUCKET, Key="k"))
    assert isinstance(failed, EndpointConnectionError)
    assert layout.error_code(failed) == "" and s3_outcome(failed) is S3Outcome.UNAVAILABLE


def _leaves(node, key=None):
    """(the nearest dict key, the string) for every string in a parsed template."""
    if isinstance(node, dict):
        for k, value in node.items():
            yield from _leaves(value, k)
    elif isinstance(node, list):
        for value in node:
            yield from _leaves(value, key)
    elif isinstance(node, str):
        yield key, node


def test_the_templates_grants_and_rules_name_the_layouts_prefixes():
    """A prefix renamed here and not in template.yaml (or the reverse) would leave a role denied, or a
    lifecycle rule expiring nothing: every key pattern the template writes covers a key the layout builds,
    and every kind of key is covered by some grant or rule."""
    from pathlib import Path

    from maas.template import Template

    doc = Template(Path(__file__).resolve().parents[2] / "template.yaml").doc
    bucket_arn = "-models-${AWS::AccountId}-${AWS::Region}/"
    # The bucket policy's deny of plain HTTP names every key ("*"): it says nothing of the layout.
    grants = [value.split(bucket_arn, 1)[1] for _, value in _leaves(doc) if bucket_arn in value]
    grants = [grant for grant in grants if grant != "*"]
    rules = [value for key, value in _leaves(doc) if key in ("s3:prefix", "Prefix", "Value") and "/" in value]
    assert len(grants) > 20 and len(rules) > 5
    batch = layout.parse_key(layout.input_key("digits", "production", "day.jsonl"), "abc")
    keys = [
        layout.model_key("digits", V1),
        layout.data_key("digits", V1),
        layout.manifest_key("digits", V1),
        layout.alias_key("digits", "production"),
        layout.history_key("digits", "production", "20260101T120000000000Z-abc.json"),
        layout.number_key("digits", 3),
        layout.input_key("digits", "3", "day.jsonl"),
        layout.input_key("digits", V1, "day.csv"),
        layout.job_input_key("digits", "production", "0" * 32, "npy"),
        batch.summary_key,
        batch.part_prefix(0) + layout.PART_DONE_FILE,
        layout.failure_prefix("batch/in/x", "abc") + layout.SUMMARY_FILE,
        layout.job_key("0" * 32),
        layout.training_data_prefix("job-1", "train") + "digits.npz",
        layout.training_source_key("job-1"),
        layout.training_checkpoints_prefix("job-1") + "model.keras",
    ]

    def covers(pattern: str, key: str) -> bool:  # IAM's wildcards are fnmatch's; a bare prefix is S3's
        return fnmatchcase(key, pattern) if "*" in pattern or "?" in pattern else key.startswith(pattern)

    for pattern in grants + rules:
        assert any(covers(pattern, key) for key in keys), f"template.yaml names {pattern}, a place the layout has not"
    for key in keys:
        assert any(covers(grant, key) for grant in grants), f"no role in template.yaml may touch {key}"
