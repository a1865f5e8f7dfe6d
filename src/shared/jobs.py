"""Batch jobs for inputs over the synchronous limit: a presigned upload, then status by job id.

    POST /models/{name}/jobs -> job record at batch/jobs/<id>.json and a presigned PUT URL for
                                batch/in/<name>/<alias or version>/jobs/<id>/input.<ext>
                                (keys from ``shared.layout``)
    GET /jobs/{id}            -> awaiting_upload | running | succeeded | failed, with the summary and
                                presigned GET URLs of results and errors once they exist

The upload itself triggers the usual batch path (S3 -> SQS -> BatchFunction). A job belongs to the
API key that created it (API Gateway's ``requestContext.identity.apiKeyId``): any other caller is
told there is no such job, so a job id alone does not hand out its presigned URLs.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from maas_core.shared.errors import InvalidName, MaasError, RegistryUnavailable
from maas_core.shared.layout import S3Outcome, is_version, job_input_key, job_key, parse_key, s3_outcome

JOB_ID_RE = re.compile(r"[0-9a-f]{32}")  # fullmatch: "$" would let a trailing newline through
EXTENSIONS = {"jsonl": "jsonl", "csv": "csv", "npy": "npy"}
CONTENT_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv", "npy": "application/octet-stream"}
URL_SECONDS = 900


class JobNotFound(MaasError):
    status = 404
    code = "job_not_found"


def _missing(exc: Exception) -> bool:
    return s3_outcome(exc) is S3Outcome.MISSING


def _public(record: dict[str, Any]) -> dict[str, Any]:
    """What a caller sees of a job record: all of it but the owner's key id."""
    return {k: v for k, v in record.items() if k != "api_key_id"}


def create_job(
    s3: Any, bucket: str, name: str, version: str, ref: str, fmt: str, api_key_id: str | None
) -> dict[str, Any]:
    """Record a job and presign its upload. ``ref`` (alias or version) is what the file is keyed by;
    ``version`` is what it resolves to now, for the caller's information; ``api_key_id`` is the
    caller's, the only one :func:`job_status` will answer (None: a caller without a key)."""
    job_id = uuid.uuid4().hex
    key = job_input_key(name, ref, job_id, EXTENSIONS[fmt])
    record = {
        "job_id": job_id,
        "model": name,
        "ref": ref,
        "version_at_creation": version if not is_version(ref) else ref,
        "input_key": key,
        "format": fmt,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "api_key_id": api_key_id,
    }
    try:
        s3.put_object(
            Bucket=bucket,
            Key=job_key(job_id),
            Body=json.dumps(record).encode(),
            ContentType="application/json",
            IfNoneMatch="*",
        )
        url = s3.generate_presigned_url(
            "put_object",
            Params={"Bucket": bucket, "Key": key, "ContentType": CONTENT_TYPES[fmt]},
            ExpiresIn=URL_SECONDS,
        )
    except Exception as exc:
        raise RegistryUnavailable("the job could not be recorded") from exc
    return {
        **_public(record),
        "status": "awaiting_upload",
        "upload": {
            "method": "PUT",
            "url": url,
            "headers": {"Content-Type": CONTENT_TYPES[fmt]},
            "expires_in": URL_SECONDS,
        },
        "status_path": f"/jobs/{job_id}",
    }


def job_status(s3: Any, bucket: str, job_id: str, api_key_id: str | None) -> dict[str, Any]:
    """The job's state, for the API key that created it; for any other caller the job does not exist."""
    if not JOB_ID_RE.fullmatch(job_id):
        raise InvalidName("job ids are 32 hex characters", expected="[0-9a-f]{32}", received=job_id[:64])
    try:
        stored = json.loads(s3.get_object(Bucket=bucket, Key=job_key(job_id))["Body"].read())
    except Exception as exc:
        if _missing(exc):
            raise JobNotFound(f"no job {job_id}", job_id=job_id) from None
        raise RegistryUnavailable("the job could not be read") from exc
    # 404, not 403: another key's job is indistinguishable from one that never existed.
    if stored.get("api_key_id") != api_key_id:
        raise JobNotFound(f"no job {job_id}", job_id=job_id)
    record = _public(stored)
    try:
        head = s3.head_object(Bucket=bucket, Key=record["input_key"])
    except Exception as exc:
        if _missing(exc):
            return {**record, "status": "awaiting_upload"}
        raise RegistryUnavailable("the job could not be read") from exc
    summary_key = parse_key(record["input_key"], head["ETag"]).summary_key
    try:
        summary = json.loads(s3.get_object(Bucket=bucket, Key=summary_key)["Body"].read())
    except Exception as exc:
        if _missing(exc):
            return {**record, "status": "running", "input_bytes": head["ContentLength"]}
        raise RegistryUnavailable("the job could not be read") from exc
    if summary.get("status") == "failed" and summary.get("retrying"):
        # A dependency failure the queue will deliver again: the job is not over yet (ARCHITECTURE.md).
        return {**record, "status": "running", "input_bytes": head["ContentLength"], "last_error": summary}
    result = {**record, "status": summary.get("status", "failed"), "summary": summary}
    if summary.get("status") == "succeeded":

        def presign(uri: str) -> str:
            key = uri.removeprefix(f"s3://{bucket}/")
            return str(
                s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=URL_SECONDS)
            )

        result["downloads"] = {
            "results": [presign(u) for u in summary["results"]],
            "errors": [presign(u) for u in summary["errors"]],
            "summary": presign(f"s3://{bucket}/{summary_key}"),
        }
    return result
