"""The jobs API on events/create_job.json and events/job_status.json, S3 from moto: who may read a
job, what its presigned URLs look like as botocore's real signer makes them, and which versions get one."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from maas_core.shared.batch import parse_key
from maas_core.shared.registry import model_key
from tests_support import event

BUCKET = os.environ["MODEL_BUCKET"]


@pytest.fixture
def signing_env(monkeypatch):
    """Credentials that look real and a region, as Lambda's environment has them (no custom endpoint)."""
    from maas_core.shared.aws import s3_client

    # AWS's documentation example credentials, not a real key.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")  # pragma: allowlist secret
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")  # pragma: allowlist secret
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3_client.cache_clear()
    yield
    s3_client.cache_clear()


def as_key(evt: dict[str, Any], api_key_id: str | None) -> dict[str, Any]:
    evt["requestContext"]["identity"]["apiKeyId"] = api_key_id
    return evt


def status_event(job: dict[str, Any], api_key_id: str | None = "examplekey") -> dict[str, Any]:
    return as_key(event("job_status", path=job["status_path"], pathParameters={"job_id": job["job_id"]}), api_key_id)


def finish(s3: Any, job: dict[str, Any]) -> None:
    """What an upload and BatchFunction leave behind: the input, then results and a summary beside it."""
    etag = s3.put_object(Bucket=BUCKET, Key=job["input_key"], Body=b"[0]\n")["ETag"]
    prefix = parse_key(job["input_key"], etag).out_prefix
    results = f"s3://{BUCKET}/{prefix}results.jsonl"
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}results.jsonl", Body=b"{}\n")
    summary = {"status": "succeeded", "results": [results], "errors": []}
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}summary.json", Body=json.dumps(summary).encode())


def assert_sigv4(url: str) -> None:
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"], url
    assert "/us-east-1/s3/aws4_request" in query["X-Amz-Credential"][0]
    assert "Signature" not in query and "AWSAccessKeyId" not in query  # no SigV2 left
    assert urlsplit(url).hostname == f"{BUCKET}.s3.us-east-1.amazonaws.com"  # the regional endpoint


def test_every_presigned_url_is_sigv4_on_the_regional_endpoint(signing_env, api, published, s3):
    status, job, _ = api(event("create_job"))
    assert status == 201
    assert_sigv4(job["upload"]["url"])
    finish(s3, job)
    status, state, _ = api(status_event(job))
    assert status == 200 and state["status"] == "succeeded"
    urls = [*state["downloads"]["results"], *state["downloads"]["errors"], state["downloads"]["summary"]]
    assert len(urls) == 2
    for url in urls:
        assert_sigv4(url)


def test_other_regions_sign_for_their_own_regional_endpoint(signing_env, monkeypatch):
    from maas_core.shared.aws import s3_client

    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    s3_client.cache_clear()
    url = s3_client().generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "k"}, ExpiresIn=60)
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url
    assert urlsplit(url).hostname == f"{BUCKET}.s3.eu-west-1.amazonaws.com"


def test_only_the_api_key_that_created_a_job_can_read_it(api, published, s3):
    status, job, _ = api(event("create_job"))
    assert status == 201 and "api_key_id" not in job
    assert api(status_event(job))[0] == 200
    for other in ("z9y8x7w6v5", None):
        status, body, _ = api(status_event(job, other))
        assert (status, body["code"]) == (404, "job_not_found"), other
    finish(s3, job)  # once there are download URLs, still none for another key
    assert "downloads" in api(status_event(job))[1]
    status, body, _ = api(status_event(job, "z9y8x7w6v5"))
    assert status == 404 and "downloads" not in body


def test_a_version_whose_model_no_longer_matches_its_sha256_gets_no_job(api, published, s3):
    s3.put_object(Bucket=BUCKET, Key=model_key("digits", published.version), Body=b"not the published model")
    for body in ('{"format": "jsonl"}', json.dumps({"version": published.version})):
        status, answer, _ = api(event("create_job", body=body))
        assert (status, answer["code"]) == (503, "model_integrity_error"), answer
        assert "sha256" in answer["error"]
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="batch/").get("KeyCount") == 0  # no job recorded


@pytest.mark.parametrize(
    "body", [{"version": "garbage"}, {"version": "20260101T120000Z-0123abcd\n"}, {"alias": "production\n"}]
)
def test_a_job_for_a_malformed_version_or_alias_is_a_400(api, published, s3, body):
    status, answer, _ = api(event("create_job", body=json.dumps(body)))
    assert (status, answer["code"]) == (400, "invalid_name"), answer
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="batch/").get("KeyCount") == 0


def test_a_job_id_with_a_trailing_newline_is_a_400(api, published):
    job_id = "0" * 32 + "%0A"  # as the path arrives, percent-encoded
    status, body, _ = api(event("job_status", path=f"/jobs/{job_id}", pathParameters={"job_id": job_id}))
    assert (status, body["code"]) == (400, "invalid_name")


def test_job_ids_are_checked_whole():
    from maas_core.shared import jobs

    assert jobs.JOB_ID_RE.fullmatch("0" * 32)
    with pytest.raises(Exception) as caught:
        jobs.job_status(None, BUCKET, "0" * 32 + "\n", None)
    assert getattr(caught.value, "code", None) == "invalid_name"


@pytest.mark.parametrize(
    ("retry", "status"),
    [
        ({"retrying": True, "attempt": 1, "max_attempts": 3}, "running"),  # the queue delivers it again
        ({"retrying": False, "attempt": 3, "max_attempts": 3}, "failed"),  # parked in the dead-letter queue
        ({"retrying": False}, "failed"),  # refused for its content: retrying cannot help
    ],
)
def test_a_failed_summary_ends_the_job_only_when_no_retry_is_coming(api, published, s3, retry, status):
    from maas_core.shared.batch import write_failure
    from maas_core.shared.errors import RegistryUnavailable

    _, job, _ = api(event("create_job"))
    etag = s3.put_object(Bucket=BUCKET, Key=job["input_key"], Body=b"[0]\n")["ETag"]
    write_failure(
        s3, BUCKET, job["input_key"], etag, RegistryUnavailable("the model registry could not be read"), retry
    )
    code, body, _ = api(status_event(job))
    assert code == 200 and body["status"] == status
    failed = body.get("last_error") or body.get("summary")
    assert (failed["status"], failed["code"]) == ("failed", "registry_unavailable")
