"""BatchFunction on events/batch_s3_put.json, S3 from moto: whatever stops a file, a failed summary
with a stable code says so before the message is retried or parked, so no file (and no job) stays
``running``; a later successful delivery still scores the file, and a late failure never hides it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from maas_core.shared.batch import parse_key, write_failure
from maas_core.shared.errors import RegistryUnavailable
from maas_core.shared.layout import model_key
from maas_core.shared.model_cache import ModelCache
from tests_support import Context, event

BUCKET = os.environ["MODEL_BUCKET"]
KEY = "batch/in/digits/production/jobs/0123/input.jsonl"
DIGIT = [[[0.0]] * 8] * 8


@pytest.fixture
def batch(registry, published, monkeypatch):
    """BatchFunction's module with a model cache over the moto registry."""
    from maas_core.functions.batch import app

    monkeypatch.setattr(app, "models", ModelCache(BUCKET, registry=registry))
    return app


def delivery(key: str, etag: str, receive: int = 1) -> dict[str, Any]:
    """events/batch_s3_put.json for this object, on its ``receive``-th receive from the queue."""
    evt = event("batch_s3_put")
    notification = json.loads(evt["Records"][0]["body"])
    notification["Records"][0]["s3"]["bucket"]["name"] = BUCKET
    notification["Records"][0]["s3"]["object"].update(key=key, eTag=etag.strip('"'))
    evt["Records"][0]["body"] = json.dumps(notification)
    evt["Records"][0]["attributes"]["ApproximateReceiveCount"] = str(receive)
    return evt


def fails(app: Any, evt: dict[str, Any], context: Any = None) -> bool:
    """Whether the record comes back to the queue: a partial failure, or (its one record failed) the
    whole invocation's, as Powertools raises it."""
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    try:
        return bool(app.lambda_handler(evt, context or Context())["batchItemFailures"])
    except BatchProcessingError:
        return True


def summary_of(s3, key: str, etag: str) -> dict[str, Any]:
    out = parse_key(key, etag).out_prefix
    return json.loads(s3.get_object(Bucket=BUCKET, Key=out + "summary.json")["Body"].read())


def upload(s3, rows: int = 5) -> str:
    data = "\n".join(json.dumps({"id": i, "instances": [DIGIT]}) for i in range(rows)).encode()
    return s3.put_object(Bucket=BUCKET, Key=KEY, Body=data)["ETag"]


def test_an_unexpected_error_writes_a_failed_summary_then_a_retry_scores_the_file(s3, batch, monkeypatch):
    """A defect (here the one this summary was added for: a value json.dumps refuses while the results
    are written) fails the record with a summary that names a stable code, not the exception's text."""
    etag = upload(s3)

    def defect(*args: Any, **kwargs: Any) -> None:
        raise ValueError("Out of range float values are not JSON compliant: secret-ish detail")

    with monkeypatch.context() as patch:
        patch.setattr("maas_core.shared.batch._score_chunk", defect)
        assert fails(batch, delivery(KEY, etag))  # SQS delivers the message again
    failed = summary_of(s3, KEY, etag)
    assert failed["status"] == "failed" and failed["code"] == "batch_scoring_failed"
    assert (failed["retrying"], failed["attempt"], failed["max_attempts"]) == (True, 1, 3)
    assert "ValueError" in failed["error"] and "secret-ish" not in json.dumps(failed)
    assert not fails(batch, delivery(KEY, etag, receive=2))  # the defect gone
    summary = summary_of(s3, KEY, etag)
    assert (summary["status"], summary["scored"]) == ("succeeded", 5) and "retrying" not in summary


def test_a_dependency_failure_says_it_is_retried_until_the_last_receive(s3, batch, registry, published):
    """A damaged model (its bytes no longer match the manifest's sha256): 503 model_integrity_error."""
    s3.put_object(Bucket=BUCKET, Key=model_key("digits", published.version), Body=b"not the model")
    etag = upload(s3)
    for receive, retrying in ((1, True), (2, True), (3, False)):
        assert fails(batch, delivery(KEY, etag, receive))
        failed = summary_of(s3, KEY, etag)
        assert (failed["status"], failed["code"]) == ("failed", "model_integrity_error")
        assert (failed["retrying"], failed["attempt"]) == (retrying, receive)


def test_a_refused_file_is_failed_and_not_retrying(s3, batch):
    etag = s3.put_object(Bucket=BUCKET, Key=KEY.replace(".jsonl", ".npy"), Body=b"\x93NUMPY")["ETag"]
    assert fails(batch, delivery(KEY.replace(".jsonl", ".npy"), etag))
    failed = summary_of(s3, KEY.replace(".jsonl", ".npy"), etag)
    assert (failed["status"], failed["code"], failed["retrying"]) == ("failed", "batch_file_invalid", False)


def test_a_late_failure_never_overwrites_a_succeeded_summary(s3, batch):
    etag = upload(s3)
    assert not fails(batch, delivery(KEY, etag))
    write_failure(s3, BUCKET, KEY, etag, RegistryUnavailable("S3 failed"), {"retrying": True})
    assert summary_of(s3, KEY, etag)["status"] == "succeeded"


def test_a_job_whose_file_failed_is_no_longer_running(s3, batch):
    from maas_core.shared.jobs import job_status
    from maas_core.shared.layout import job_key

    etag = upload(s3)
    record = {"job_id": "0" * 32, "api_key_id": "k", "model": "digits", "ref": "production", "input_key": KEY}
    s3.put_object(Bucket=BUCKET, Key=job_key("0" * 32), Body=json.dumps(record).encode())
    assert job_status(s3, BUCKET, "0" * 32, "k")["status"] == "running"
    write_failure(s3, BUCKET, KEY, etag, RegistryUnavailable("S3 failed"), {"retrying": False})
    assert job_status(s3, BUCKET, "0" * 32, "k")["status"] == "failed"


def test_max_receives_is_the_queues_redrive_count():
    from maas_core.functions.batch import app

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)  # CloudFormation tags: not needed here
    template = yaml.load((Path(__file__).parents[2] / "template.yaml").read_text(), Loader=Loader)
    redrive = template["Resources"]["BatchQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == app.MAX_RECEIVES


def test_an_invocation_near_its_timeout_stops_while_its_summary_can_be_written(s3, batch):
    """Lambda kills an invocation at its timeout and nothing after runs: stop first, and say why."""

    class Ending(Context):
        def get_remaining_time_in_millis(self) -> int:
            return 20_000  # under STOP_BEFORE_TIMEOUT_S

    etag = upload(s3)
    assert fails(batch, delivery(KEY, etag), Ending())
    failed = summary_of(s3, KEY, etag)
    assert (failed["status"], failed["code"], failed["retrying"]) == ("failed", "batch_time_limit", True)
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix="batch/out/")["Contents"]
    assert [o["Key"].rsplit("/", 1)[1] for o in listing] == ["summary.json"]  # no half-written results
