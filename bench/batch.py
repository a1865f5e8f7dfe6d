"""Batch scoring: rows/s and peak memory of BatchFunction's core on a JSON Lines file, against bare session.run.

A JSON Lines file of digits (one instance per line, as clients write them) is put under batch/in/ and
scored by ``shared.batch.score_object`` in a fresh child process on the function's runtime, exactly as
BatchFunction does (streamed, chunked, multipart output), with the function's memory setting and so
its ONNX Runtime threads. The floor is a bare ``session.run`` on the same model and threads over the
same digits as float32 arrays at each batch size; the best size is the comparison.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Runtime, child, say
from bench.stats import Stat

BARE_SIZES = "1,8,32,128,512,2048,8192"
BARE_ROWS = 8192


def digits_rows() -> np.ndarray:
    from sklearn.datasets import load_digits

    return np.asarray(load_digits().images, dtype=np.float32)[..., None]


def write_rows(path: Path, rows: int) -> Path:
    images = digits_rows()
    np.save(path, images[np.arange(rows) % len(images)])
    return path


def put_file(s3: Any, bucket: str, key: str, size_mib: float) -> tuple[str, int, int]:
    """Upload a generated JSON Lines file of about ``size_mib`` MiB; returns (etag, bytes, rows)."""
    lines = [json.dumps(image.tolist()) + "\n" for image in digits_rows()]
    target = int(size_mib * 2**20)
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl") as handle:
        written = rows = 0
        while written < target:
            line = lines[rows % len(lines)]
            handle.write(line)
            written += len(line)
            rows += 1
        handle.flush()
        s3.upload_file(handle.name, bucket, key)
    return str(s3.head_object(Bucket=bucket, Key=key)["ETag"]), written, rows


def clear_outputs(s3: Any, bucket: str, prefix: str) -> None:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])


def put_input(s3: Any, bucket: str, size_mib: float) -> dict[str, Any]:
    """The JSON Lines file every round scores, uploaded once."""
    key = "batch/in/digits/production/bench/digits.jsonl"
    etag, size, rows = put_file(s3, bucket, key, size_mib)
    say(f"   input: {size / 2**20:,.0f} MiB, {rows:,} rows")
    return {"key": key, "etag": etag, "bytes": size, "rows": rows, "format": "jsonl"}


def measure(
    s3: Any,
    bucket: str,
    runtime: Runtime,
    env: dict[str, str],
    model_file: Path,
    given: dict[str, Any],
    chunk_rows: int,
    runs: int,
    work: Path,
    round_no: int,
) -> dict[str, Any]:
    """One round: ``runs`` scorings of the input by BatchFunction's core, then the bare floor."""
    scored = []
    for i in range(runs):
        clear_outputs(s3, bucket, "batch/out/")  # else the run is a repeated delivery and skips
        log = work / f"batch-{round_no}-{i}.log"
        result = child(runtime, ["batch", given["key"], given["etag"], str(chunk_rows)], env, log)
        say(f"   run {i + 1}/{runs}: {result['rows_per_s']:,.0f} rows/s, peak RSS {result['peak_rss_mib']:.0f} MiB")
        scored.append(result)
    clear_outputs(s3, bucket, "batch/out/")
    rows_file = write_rows(work / "bare-rows.npy", BARE_ROWS)
    bare = child(runtime, ["bare-batch", str(model_file), str(rows_file), BARE_SIZES], env, work / "bare-batch.log")
    phases = {name: Stat.of(r["phases_s"].get(name, 0.0) for r in scored).to_dict(2) for name in scored[0]["phases_s"]}
    # The model's share alone: rows over the time BatchFunction spent inside session.run.
    inside = [r["rows"] / r["phases_s"]["session.run"] for r in scored if r["phases_s"].get("session.run")]
    return {
        "input": {**{k: v for k, v in given.items() if k != "etag"}, "chunk_rows": chunk_rows},
        "rows_per_s": Stat.of(r["rows_per_s"] for r in scored).to_dict(1),
        "peak_rss_mib": Stat.of(r["peak_rss_mib"] for r in scored).to_dict(1),
        "rss_before_scoring_mib": Stat.of(r["rss_before_scoring_mib"] for r in scored).to_dict(1),
        "wall_s": Stat.of(r["wall_s"] for r in scored).to_dict(2),
        "failed_rows": Stat.of(r["failed"] for r in scored).to_dict(0),
        "phases_s": phases,
        "session_run_rows_per_s": Stat.of(inside).to_dict(1) if inside else None,
        "bare": {
            "threads": bare["threads"],
            "rows": bare["rows"],
            "rows_per_s": {size: Stat.of(passes).to_dict(1) for size, passes in bare["rows_per_s"].items()},
        },
    }


def finish(summary: dict[str, Any]) -> dict[str, Any]:
    """After the last round: the bare batch size with the best median rows/s is the floor."""
    sizes = summary.get("bare", {}).get("rows_per_s")
    if sizes:
        best_size, best = max(sizes.items(), key=lambda item: item[1]["median"])
        summary["bare"].update(best_batch_size=int(best_size), best_rows_per_s=best)
    return summary
