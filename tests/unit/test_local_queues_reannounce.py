"""On a fresh embedded server the queues are new and empty: files under batch/in/ that were not
finished before are announced again, each once, and finished or refused ones are left alone."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus

import pytest

from maas.local_queues import missing_queues, reannounce, setup
from maas.stack import load_template
from maas_core.shared.batch import failure_prefix
from tests_support import ROOT


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    import boto3
    from moto import mock_aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    template = load_template(str(ROOT / "template.yaml"))
    with mock_aws():
        s3, sqs = boto3.client("s3", region_name="us-east-1"), boto3.client("sqs", region_name="us-east-1")
        for bucket in template.bucket_names():
            s3.create_bucket(Bucket=bucket)
        yield {"template": template, "s3": s3, "sqs": sqs, "bucket": template.bucket_notifications()[0]["bucket"]}


def put(local: dict[str, Any], key: str, summary: dict[str, Any] | None = None) -> None:
    s3, bucket = local["s3"], local["bucket"]
    etag = s3.put_object(Bucket=bucket, Key=key, Body=b'{"instances": [[0]]}\n')["ETag"]
    if summary is not None:
        s3.put_object(Bucket=bucket, Key=failure_prefix(key, etag) + "summary.json", Body=json.dumps(summary).encode())


def test_unfinished_files_are_announced_again_and_finished_or_refused_ones_are_not(local):
    template, s3, sqs = local["template"], local["s3"], local["sqs"]
    new = missing_queues(template, sqs)
    assert new == set(template.queues())  # nothing on a fresh server
    put(local, "batch/in/digits/production/never started.jsonl")
    put(local, "batch/in/digits/production/done.jsonl", {"status": "succeeded", "rows": 1})
    put(local, "batch/in/digits/production/bad.jsonl", {"status": "failed", "code": "invalid_input"})
    put(local, "batch/in/digits/production/s3-was-down.jsonl", {"status": "failed", "code": "registry_unavailable"})
    put(local, "batch/in/NOT A MODEL/x.jsonl", {"status": "failed", "code": "invalid_name"})  # under _rejected/
    put(local, "models/digits/aliases/production.json")  # not under the notified prefix
    urls = setup(template, sqs, s3, function_timeout=60)
    log = io.StringIO()

    assert reannounce(template, sqs, s3, urls, new, log) == 2
    queue = template.bucket_notifications()[0]["queue"]
    bodies = [
        json.loads(m["Body"])
        for m in sqs.receive_message(QueueUrl=urls[queue], MaxNumberOfMessages=10).get("Messages", [])
    ]
    events = [b for b in bodies if "Records" in b]  # moto also sends s3:TestEvent when notifications are set
    objects = sorted((unquote_plus(e["Records"][0]["s3"]["object"]["key"]), e["Records"][0]["s3"]) for e in events)
    assert [key for key, _ in objects] == [
        "batch/in/digits/production/never started.jsonl",
        "batch/in/digits/production/s3-was-down.jsonl",
    ]
    for key, s3_part in objects:  # what BatchFunction reads: bucket, URL-encoded key, the object's ETag
        assert s3_part["bucket"]["name"] == local["bucket"]
        assert s3_part["object"]["eTag"] == s3.head_object(Bucket=local["bucket"], Key=key)["ETag"].strip('"')
    assert log.getvalue().count("re-announced") == 2 and "never started.jsonl" in log.getvalue()


def test_queues_a_running_server_already_holds_are_not_announced_to_again(local):
    """A second command reusing a live server finds its queues: their messages were never lost."""
    template, s3, sqs = local["template"], local["s3"], local["sqs"]
    setup(template, sqs, s3, function_timeout=60)
    put(local, "batch/in/digits/production/in-flight.jsonl")
    assert missing_queues(template, sqs) == set()
    assert reannounce(template, sqs, s3, {}, set(), io.StringIO()) == 0


def test_the_event_has_the_shape_of_the_s3_notification_in_events(local):
    """The same fields, at the same places, as events/batch_s3_put.json's body (what S3 sends)."""
    from maas.local_queues import s3_event

    sample = json.loads(json.loads((ROOT / "events" / "batch_s3_put.json").read_text())["Records"][0]["body"])

    def shape(value: Any) -> Any:
        return {k: shape(v) for k, v in value.items()} if isinstance(value, dict) else type(value).__name__

    ours, theirs = shape(s3_event("b", "batch/in/m/a/f.jsonl", 3, '"e"')["Records"][0]), shape(sample["Records"][0])

    def within(a: Any, b: Any) -> bool:
        return a == b if not isinstance(a, dict) else all(k in b and within(v, b[k]) for k, v in a.items())

    assert within(ours, theirs)
