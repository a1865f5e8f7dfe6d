"""Scoring a whole file from S3: the core of BatchFunction.

    batch/in/<model>/<alias or version>/<any path>/<file>.{jsonl,csv,npy}
 -> batch/out/<model>/<alias or version>/<any path>/<file>/<etag>/{results.jsonl, errors.jsonl, summary.json}

The keys are built and parsed in ``shared.layout``. Output keys derive from the input key and its
ETag, so a repeated delivery rewrites (or skips) the same objects instead of adding new ones. Every
input row ends up in the results or in the errors file with its line number and reason; the summary
is written last and only then is the file done.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from maas_core.shared.batch_io import (
    Row,
    S3Writer,
    check_csv_header,
    csv_header,
    file_format,
    line_parts,
    read_csv,
    read_jsonl,
    read_npy,
)
from maas_core.shared.errors import MaasError
from maas_core.shared.inference import feeds_from_body, format_predictions, nonfinite_rows, run
from maas_core.shared.layout import (
    ERRORS_FILE,
    PART_DONE_FILE,
    RESULTS_FILE,
    SUMMARY_FILE,
    BatchKey,
    S3Outcome,
    error_code,
    failure_prefix,
    parse_key,
    s3_outcome,
)
from maas_core.shared.model_cache import LoadedModel, ModelCache

# Scoring stops this long before the invocation's timeout, so the failed summary is still written: a
# killed invocation leaves none, and a job would read "running" until the message is parked and after.
STOP_BEFORE_TIMEOUT_S = 30.0
# A chunk of rows is scored together: bounded in bytes as well as rows, so long rows cannot make it large.
CHUNK_BYTES = 8 * 1024 * 1024
NONFINITE = "the model's outputs are NaN or infinite for this row: its values are outside the range the model handles"


@dataclass
class Tally:
    rows: int = 0
    scored: int = 0
    failed: int = 0
    started: float = field(default_factory=time.perf_counter)


def _rows(
    stream: Any, size: int, fmt: str, model: LoadedModel, first_line: int = 1, header: list[str] | None = None
) -> Iterator[Row]:
    if fmt == "jsonl":
        return read_jsonl(stream, first_line)
    if fmt == "csv":
        return read_csv(stream, model.manifest.inputs, header, first_line if header else 2)
    return read_npy(stream, size)


def _chunks(rows: Iterator[Row], size: int, max_bytes: int = CHUNK_BYTES) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    held = 0
    for row in rows:
        chunk.append(row)
        held += row.size
        if len(chunk) >= size or held >= max_bytes:
            yield chunk
            chunk, held = [], 0
    if chunk:
        yield chunk


def _batches(model: LoadedModel, chunk: list[Row]) -> list[tuple[list[Row], dict[str, np.ndarray]]]:
    """The chunk's readable rows as batches with their feeds, an unreadable row's error set on it.

    The whole chunk is read as one batch first (one array per input, the same checks as a request
    body); only when that fails is each row read alone, to find the rows at fault, and the rest are
    batched by shape (rows of a model with a free dimension need not agree on it)."""
    rows = [row for row in chunk if row.error is None]
    if not rows:
        return []
    try:
        return [(rows, feeds_from_body({"instances": [row.instance for row in rows]}, model, len(rows)))]
    except MaasError:
        pass
    by_shape: dict[tuple[Any, ...], tuple[list[Row], list[dict[str, np.ndarray]]]] = {}
    for row in rows:
        try:
            feeds = feeds_from_body({"instances": [row.instance]}, model, 1)
        except MaasError as exc:
            row.error = exc.message
            continue
        group = by_shape.setdefault(tuple((k, v.shape[1:]) for k, v in feeds.items()), ([], []))
        group[0].append(row)
        group[1].append(feeds)
    return [
        (good, {name: np.concatenate([f[name] for f in feeds]) for name in feeds[0]})
        for good, feeds in by_shape.values()
    ]


def _score_chunk(model: LoadedModel, chunk: list[Row], results: S3Writer, errors: S3Writer, tally: Tally) -> None:
    """Score the rows that can be read, batch by batch; write every row, in line order, to the results
    or to the errors file."""
    predictions: dict[int, Any] = {}
    for good, feeds in _batches(model, chunk):
        outputs = run(model, feeds, finite=False)
        nonfinite = set(nonfinite_rows(outputs))
        for index, (row, prediction) in enumerate(zip(good, format_predictions(model, outputs), strict=True)):
            if index in nonfinite:  # JSON cannot carry NaN or Infinity, and the row must not sink the file
                row.error = NONFINITE
            else:
                predictions[id(row)] = prediction
    for row in chunk:
        tally.rows += 1
        keyed = {"line": row.line, **({"id": row.id} if row.id is not None else {})}
        if row.error is None:
            results.write_line({**keyed, "prediction": predictions[id(row)]})
            tally.scored += 1
        else:
            errors.write_line({**keyed, "error": row.error})
            tally.failed += 1


def _get_json(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:
        if s3_outcome(exc) is S3Outcome.MISSING:
            return None
        raise
    return dict(json.loads(body))


def _put_json(s3: Any, bucket: str, key: str, value: dict[str, Any]) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(value, indent=2).encode(), ContentType="application/json")


def existing_summary(s3: Any, bucket: str, key: BatchKey) -> dict[str, Any] | None:
    return _get_json(s3, bucket, key.summary_key)


def _score_range(
    s3: Any,
    bucket: str,
    key: str,
    etag: str,
    model: LoadedModel,
    fmt: str,
    chunk_rows: int,
    out: str,
    byte_range: tuple[int, int] | None = None,
    first_line: int = 1,
    header: list[str] | None = None,
    time_left: Callable[[], float] | None = None,
) -> Tally:
    """Score the rows of the object (or of one byte range of it) into ``out``results/errors.jsonl,
    chunk by chunk while ``time_left`` (seconds) allows."""
    extra = {"Range": f"bytes={byte_range[0]}-{byte_range[1] - 1}"} if byte_range else {}
    response = s3.get_object(Bucket=bucket, Key=key, IfMatch=f'"{etag}"', **extra)
    results = S3Writer(s3, bucket, out + RESULTS_FILE, "application/x-ndjson")
    errors = S3Writer(s3, bucket, out + ERRORS_FILE, "application/x-ndjson")
    tally = Tally()
    rows = _rows(response["Body"], int(response["ContentLength"]), fmt, model, first_line, header)
    try:
        for chunk in _chunks(rows, chunk_rows):
            if time_left is not None and time_left() < STOP_BEFORE_TIMEOUT_S:
                raise BatchTimeLimit(
                    f"scoring stopped after {tally.rows} rows, {STOP_BEFORE_TIMEOUT_S:.0f} s before the function's "
                    "timeout; a smaller file (or JSON Lines or CSV, which are cut into parts) fits",
                    rows=tally.rows,
                )
            _score_chunk(model, chunk, results, errors, tally)
        results.close()
        errors.close()
    except BaseException:
        for writer in (results, errors):
            with contextlib.suppress(Exception):  # the error that stopped the scoring is the one to report
                writer.abort()
        raise
    return tally


def _summary(
    bucket: str,
    key: str,
    batch: BatchKey,
    fmt: str,
    version: str,
    tallies: list[dict[str, Any]],
    outs: list[str],
    started_at: str,
    elapsed: float,
) -> dict[str, Any]:
    rows = sum(t["rows"] for t in tallies)
    return {
        "status": "succeeded",
        "input": f"s3://{bucket}/{key}",
        "etag": batch.etag,
        "format": fmt,
        "model": batch.model,
        "ref": batch.ref,
        "version": version,
        "rows": rows,
        "scored": sum(t["scored"] for t in tallies),
        "failed": sum(t["failed"] for t in tallies),
        "parts": len(outs),
        "results": [f"s3://{bucket}/{o}{RESULTS_FILE}" for o in outs],
        "errors": [f"s3://{bucket}/{o}{ERRORS_FILE}" for o in outs],
        "started_at": started_at,
        "duration_s": round(elapsed, 3),
        "rows_per_s": round(rows / elapsed, 1) if elapsed > 0 else None,
    }


def score_object(
    s3: Any,
    bucket: str,
    key: str,
    etag: str,
    models: ModelCache,
    chunk_rows: int,
    part_bytes: int | None = None,
    send_parts: Callable[[list[dict[str, Any]]], None] | None = None,
    time_left: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """Score every row of s3://bucket/key and return the summary (written last, under the out prefix).

    A JSON Lines or CSV file over ``part_bytes`` is cut into parts on line boundaries instead; the
    parts go out through ``send_parts`` (the queue) to concurrent invocations, and the one that
    finishes last writes the summary.
    """
    batch = parse_key(key, etag)
    done = existing_summary(s3, bucket, batch)
    if done is not None and done.get("status") == "succeeded":
        return {**done, "skipped": "already scored (repeated delivery)"}
    fmt = file_format(key)
    model = models.get(batch.model, batch.ref)  # pinned for the whole file, every part included
    try:
        size = int(s3.head_object(Bucket=bucket, Key=key, IfMatch=f'"{batch.etag}"')["ContentLength"])
    except Exception as exc:
        if s3_outcome(exc) in (S3Outcome.PRECONDITION_FAILED, S3Outcome.MISSING):
            # Replaced or deleted since this event: the newer object has an event of its own.
            return {
                "status": "skipped",
                "input": f"s3://{bucket}/{key}",
                "etag": batch.etag,
                "reason": error_code(exc),
            }
        raise
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    ranges: list[tuple[int, int, int]] = []
    if part_bytes and send_parts and fmt in ("jsonl", "csv") and size > part_bytes:
        body = s3.get_object(Bucket=bucket, Key=key, IfMatch=f'"{batch.etag}"')["Body"]
        ranges, header = line_parts(body, size, part_bytes, skip_header=fmt == "csv")
        ranges = [r for r in ranges if r[0] < r[1]]  # a CSV that is all header has no rows to cut
        if fmt == "csv":
            check_csv_header(csv_header(header), model.manifest.inputs)  # once, not in every part
    if ranges and send_parts:
        send_parts(
            [
                {
                    "maas_batch_part": {
                        "bucket": bucket,
                        "key": key,
                        "etag": batch.etag,
                        "version": model.version,
                        "format": fmt,
                        "part": i,
                        "parts": len(ranges),
                        "start": start,
                        "end": end,
                        "first_line": line,
                        # Its length, not the header: 100,000 column names do not fit in a queue message.
                        "header_bytes": len(header),
                        "started_at": started_at,
                    }
                }
                for i, (start, end, line) in enumerate(ranges)
            ]
        )
        return {"status": "fanned_out", "input": f"s3://{bucket}/{key}", "parts": len(ranges), "bytes": size}
    started = time.perf_counter()
    tally = _score_range(s3, bucket, key, batch.etag, model, fmt, chunk_rows, batch.out_prefix, time_left=time_left)
    summary = _summary(
        bucket,
        key,
        batch,
        fmt,
        model.version,
        [vars(tally)],
        [batch.out_prefix],
        started_at,
        time.perf_counter() - started,
    )
    _put_json(s3, bucket, batch.summary_key, summary)
    return summary


def score_part(
    s3: Any, part: dict[str, Any], models: ModelCache, chunk_rows: int, time_left: Callable[[], float] | None = None
) -> dict[str, Any]:
    """Score one byte range of a large file; the part that completes the set writes the summary."""
    bucket, key = part["bucket"], part["key"]
    batch = parse_key(key, part["etag"])
    out = batch.part_prefix(part["part"])
    marker = _get_json(s3, bucket, out + PART_DONE_FILE)
    if marker is None:
        model = models.get(batch.model, part["version"])
        header = part.get("header")  # a message queued before header_bytes
        if part.get("header_bytes"):
            header = csv_header(
                s3.get_object(
                    Bucket=bucket, Key=key, IfMatch=f'"{batch.etag}"', Range=f"bytes=0-{part['header_bytes'] - 1}"
                )["Body"].read()
            )
        started = time.perf_counter()
        tally = _score_range(
            s3,
            bucket,
            key,
            batch.etag,
            model,
            part["format"],
            chunk_rows,
            out,
            (part["start"], part["end"]),
            part["first_line"],
            header,
            time_left,
        )
        marker = {
            "rows": tally.rows,
            "scored": tally.scored,
            "failed": tally.failed,
            "duration_s": round(time.perf_counter() - started, 3),
        }
        _put_json(s3, bucket, out + PART_DONE_FILE, marker)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=batch.parts_prefix)
    done = f".{PART_DONE_FILE}"
    finished = sorted(o["Key"] for page in pages for o in page.get("Contents", []) if o["Key"].endswith(done))
    if len(finished) < part["parts"]:
        return {"status": "part_done", "part": part["part"], "parts": part["parts"], **marker}
    tallies = [_get_json(s3, bucket, k) or {} for k in finished]
    outs = [k.removesuffix(PART_DONE_FILE) for k in finished]
    began = datetime.fromisoformat(part["started_at"])
    summary = _summary(
        bucket,
        key,
        batch,
        part["format"],
        part["version"],
        tallies,
        outs,
        part["started_at"],
        (datetime.now(UTC) - began).total_seconds(),
    )
    _put_json(s3, bucket, batch.summary_key, summary)
    return summary


class BatchDependencyFailed(MaasError):
    """S3 or SQS failed while a file was scored: the queue delivers the message again."""

    status = 503
    code = "batch_dependency_failed"


class BatchTimeLimit(MaasError):
    """The invocation neared the function's timeout before the file (or part) was scored."""

    status = 503
    code = "batch_time_limit"


class BatchScoringFailed(MaasError):
    """Scoring stopped on an error no other code names (a defect): the message is retried as any other."""

    status = 500
    code = "batch_scoring_failed"


def failure_reason(exc: Exception) -> MaasError:
    """The stable code and short message a failed summary carries for ``exc``: never its text or trace,
    which may hold anything (a key, a value, a URL)."""
    if isinstance(exc, MaasError):
        return exc
    if isinstance(exc, BotoCoreError | ClientError):
        return BatchDependencyFailed(
            "S3 or SQS failed while the file was scored",
            operation=getattr(exc, "operation_name", None),
            error=error_code(exc) or type(exc).__name__,
        )
    return BatchScoringFailed(f"scoring stopped on an unexpected {type(exc).__name__}")


def write_failure(
    s3: Any, bucket: str, key: str, etag: str, reason: MaasError, retry: dict[str, Any] | None = None
) -> None:
    """Leave a failed summary where the results would have gone, so the user (and a job's status) sees
    why; ``retry`` says whether the queue delivers the message again. Never over a succeeded summary:
    a late failure of a redelivered message must not hide results that are complete (compare-and-swap,
    so a success written meanwhile also stands)."""
    summary_key = failure_prefix(key, etag) + SUMMARY_FILE
    summary = {"status": "failed", "input": f"s3://{bucket}/{key}", "etag": etag.strip('"'), **reason.to_body()}
    try:
        current = s3.get_object(Bucket=bucket, Key=summary_key)
    except Exception as exc:
        if s3_outcome(exc) is not S3Outcome.MISSING:
            raise
        condition = {"IfNoneMatch": "*"}
    else:
        if json.loads(current["Body"].read()).get("status") == "succeeded":
            return
        condition = {"IfMatch": current["ETag"]}
    try:
        s3.put_object(
            Bucket=bucket,
            Key=summary_key,
            Body=json.dumps({**summary, **(retry or {})}, indent=2).encode(),
            ContentType="application/json",
            **condition,
        )
    except Exception as exc:
        if s3_outcome(exc) is not S3Outcome.PRECONDITION_FAILED:
            raise
