"""Scoring a whole file from S3: the core of BatchFunction.

    batch/in/<model>/<alias or version>/<any path>/<file>.{jsonl,csv,npy}
 -> batch/out/<model>/<alias or version>/<any path>/<file>/<etag>/{results.jsonl, errors.jsonl, summary.json}

Output keys derive from the input key and its ETag, so a repeated delivery rewrites (or skips) the
same objects instead of adding new ones. Every input row ends up in the results or in the errors
file with its line number and reason; the summary is written last and only then is the file done.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from shared.batch_io import BatchFileError, Row, S3Writer, file_format, read_csv, read_jsonl, read_npy
from shared.errors import MaasError
from shared.inference import feeds_from_body, format_predictions, run
from shared.model_cache import LoadedModel, ModelCache
from shared.registry import check_alias, check_name, check_version, is_version

IN_PREFIX = "batch/in/"
OUT_PREFIX = "batch/out/"


@dataclass
class BatchKey:
    model: str
    ref: str
    path: str
    etag: str

    @property
    def out_prefix(self) -> str:
        return f"{OUT_PREFIX}{self.model}/{self.ref}/{self.path}/{self.etag}/"


def parse_key(key: str, etag: str) -> BatchKey:
    if not key.startswith(IN_PREFIX):
        raise BatchFileError(
            f"batch files go under {IN_PREFIX}", expected=f"{IN_PREFIX}<model>/<alias>/<file>", received=key
        )
    parts = key[len(IN_PREFIX) :].split("/")
    if len(parts) < 3 or not all(parts) or any(p in (".", "..") for p in parts):
        raise BatchFileError(
            "batch file keys name a model and an alias or version",
            expected=f"{IN_PREFIX}<model>/<alias or version>/<file>",
            received=key,
        )
    model, ref = check_name(parts[0]), parts[1]
    ref = check_version(ref) if is_version(ref) else check_alias(ref)
    clean_etag = etag.strip('"')
    if not clean_etag.replace("-", "").isalnum():
        raise BatchFileError("unexpected ETag", received=etag)
    return BatchKey(model=model, ref=ref, path="/".join(parts[2:]), etag=clean_etag)


@dataclass
class Tally:
    rows: int = 0
    scored: int = 0
    failed: int = 0
    started: float = field(default_factory=time.perf_counter)


def _rows(stream: Any, fmt: str, model: LoadedModel) -> Iterator[Row]:
    if fmt == "jsonl":
        return read_jsonl(stream)
    if fmt == "csv":
        return read_csv(stream, model.manifest["inputs"])
    return read_npy(stream)


def _chunks(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _score_chunk(model: LoadedModel, chunk: list[Row], results: S3Writer, errors: S3Writer, tally: Tally) -> None:
    good: list[tuple[Row, dict[str, np.ndarray]]] = []
    for row in chunk:
        tally.rows += 1
        if row.error is None:
            try:
                good.append((row, feeds_from_body({"instances": [row.instance]}, model, 1)))
                continue
            except MaasError as exc:
                row.error = exc.message
        tally.failed += 1
        errors.write_line({"line": row.line, **({"id": row.id} if row.id is not None else {}), "error": row.error})
    if not good:
        return
    names = list(good[0][1])
    feeds = {name: np.concatenate([f[name] for _, f in good]) for name in names}
    predictions = format_predictions(model, run(model, feeds))
    for (row, _), prediction in zip(good, predictions, strict=True):
        record = {"line": row.line, **({"id": row.id} if row.id is not None else {}), "prediction": prediction}
        results.write_line(record)
    tally.scored += len(good)


def existing_summary(s3: Any, bucket: str, key: BatchKey) -> dict[str, Any] | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=key.out_prefix + "summary.json")["Body"].read()
    except Exception as exc:
        if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    return dict(json.loads(body))


def score_object(s3: Any, bucket: str, key: str, etag: str, models: ModelCache, chunk_rows: int) -> dict[str, Any]:
    """Score every row of s3://bucket/key; return the summary (written last, under the out prefix)."""
    batch = parse_key(key, etag)
    done = existing_summary(s3, bucket, batch)
    if done is not None and done.get("status") == "succeeded":
        return {**done, "skipped": "already scored (repeated delivery)"}
    fmt = file_format(key)
    model = models.get(batch.model, batch.ref)  # pinned for the whole file
    try:
        response = s3.get_object(Bucket=bucket, Key=key, IfMatch=f'"{batch.etag}"')
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code in ("PreconditionFailed", "412", "NoSuchKey"):
            # Replaced or deleted since this event: the newer object has an event of its own.
            return {"status": "skipped", "input": f"s3://{bucket}/{key}", "etag": batch.etag, "reason": code}
        raise
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    results = S3Writer(s3, bucket, batch.out_prefix + "results.jsonl", "application/x-ndjson")
    errors = S3Writer(s3, bucket, batch.out_prefix + "errors.jsonl", "application/x-ndjson")
    tally = Tally()
    try:
        for chunk in _chunks(_rows(response["Body"], fmt, model), chunk_rows):
            _score_chunk(model, chunk, results, errors, tally)
        results.close()
        errors.close()
    except BaseException:
        results.abort()
        errors.abort()
        raise
    elapsed = time.perf_counter() - tally.started
    summary = {
        "status": "succeeded",
        "input": f"s3://{bucket}/{key}",
        "etag": batch.etag,
        "format": fmt,
        "model": batch.model,
        "ref": batch.ref,
        "version": model.version,
        "rows": tally.rows,
        "scored": tally.scored,
        "failed": tally.failed,
        "results": f"s3://{bucket}/{batch.out_prefix}results.jsonl",
        "errors": f"s3://{bucket}/{batch.out_prefix}errors.jsonl",
        "started_at": started_at,
        "duration_s": round(elapsed, 3),
        "rows_per_s": round(tally.rows / elapsed, 1) if elapsed > 0 else None,
    }
    s3.put_object(
        Bucket=bucket,
        Key=batch.out_prefix + "summary.json",
        Body=json.dumps(summary, indent=2).encode(),
        ContentType="application/json",
    )
    return summary


def write_failure(s3: Any, bucket: str, key: str, etag: str, reason: MaasError) -> None:
    """Leave a failed summary where the results would have gone, so the user sees why."""
    try:
        batch = parse_key(key, etag)
    except MaasError:
        return  # no place derived from this key can be trusted; the logs and the DLQ carry the reason
    summary = {"status": "failed", "input": f"s3://{bucket}/{key}", "etag": batch.etag, **reason.to_body()}
    s3.put_object(
        Bucket=bucket,
        Key=batch.out_prefix + "summary.json",
        Body=json.dumps(summary, indent=2).encode(),
        ContentType="application/json",
    )
