"""`maas local batch FILE --model NAME`: drop a file into the embedded stack and fetch what came out.

The file goes to ``batch/in/<model>/<alias or version>/<file name>`` in the model bucket; the
embedded S3 announces it to the template's queue, whose poller invokes BatchFunction through the
Lambda RIE. When the summary appears, results, errors and summary are downloaded into DIR.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import IO, Any

from maas import console
from maas.stack import load_template, local_client, queue_consumers, s3_for
from maas_core.shared.errors import MaasError
from maas_core.shared.layout import BatchKey, input_key, parse_key


def run(
    file: Path,
    model: str,
    ref: str,
    out_dir: Path,
    timeout_s: float,
    template_path: str | None = None,
    env_vars: str | None = None,
) -> int:
    try:
        key = input_key(model, ref, file.name)
    except MaasError as error:  # refused before the upload: its results would go under _rejected/, not here
        print(json.dumps(error.to_body(), indent=2), file=sys.stderr)
        return 2
    template = load_template(template_path, env_vars)
    bucket = template.function("ApiFunction").environment["MODEL_BUCKET"]
    with s3_for(template) as env, queue_consumers(template, env) as consumers:
        if not consumers:
            print("maas: no function in template.yaml consumes a queue, or S3 is not the embedded one")
            return 2
        s3 = local_client(env, "s3")
        with file.open("rb") as body:
            etag = s3.put_object(Bucket=bucket, Key=key, Body=body)["ETag"]
        batch = parse_key(key, etag)
        prefix = batch.out_prefix
        size = file.stat().st_size
        print(f"put s3://{bucket}/{key} ({size:,} bytes); waiting for s3://{bucket}/{batch.summary_key}")
        part_bytes = int(template.function("BatchFunction").environment.get("BATCH_PART_BYTES") or 0)
        parts = -(-size // part_bytes) if part_bytes and size > part_bytes else 1  # about: parts end at lines
        summary = wait_for_summary(s3, bucket, batch.summary_key, timeout_s, PartsProgress(s3, bucket, batch, parts))
        if summary is None:
            print(f"maas: no summary after {timeout_s:.0f} s; the message may be retrying or in the dead-letter queue")
            return 1
        out_dir.mkdir(parents=True, exist_ok=True)
        keys = [batch.summary_key]
        if summary.get("status") == "succeeded":  # a failed file has a summary only
            keys += [uri.removeprefix(f"s3://{bucket}/") for uri in summary["results"] + summary["errors"]]
        for key in keys:  # parts/00001.results.jsonl -> parts-00001.results.jsonl
            s3.download_file(bucket, key, str(out_dir / key.removeprefix(prefix).replace("/", "-")))
        print(json.dumps(summary, indent=2))
        return 0 if summary.get("status") == "succeeded" else 1


def wait_for_summary(
    s3: Any, bucket: str, key: str, timeout_s: float, progress: PartsProgress | None = None
) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            try:
                return dict(json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
            except s3.exceptions.NoSuchKey:
                if progress:
                    progress.look()
                time.sleep(0.3)
        return None
    finally:
        if progress:
            progress.bar.clear()


class PartsProgress:
    """Rows scored so far, from the parts' done markers (a large file is scored in parts, each marked
    done with its rows when scored): a bar with the rate and the time left on a terminal, a plain line
    per tenth of the parts elsewhere."""

    def __init__(self, s3: Any, bucket: str, batch: BatchKey, parts: int, out: IO[str] | None = None) -> None:
        self.s3, self.bucket, self.batch, self.parts = s3, bucket, batch, parts
        self.out = out or sys.stdout
        self.bar = console.Progress("scoring", self.out)
        self.rows: dict[str, int] = {}
        self.said = 0
        self.started = time.monotonic()

    def look(self) -> None:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.batch.parts_prefix)
        for key in [o["Key"] for page in pages for o in page.get("Contents", []) if o["Key"].endswith(".done.json")]:
            if key not in self.rows:
                marker = json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
                self.rows[key] = int(marker.get("rows", 0))
        done, rows = len(self.rows), sum(self.rows.values())
        total = max(self.parts, done)
        rate = f"{rows / max(time.monotonic() - self.started, 1e-9):,.0f} rows/s"
        self.bar.update(done, total, f"parts, {rows:,} rows, {rate}")
        if not self.bar.shown and done >= self.said + max(1, total // 10):
            self.out.write(f"  {done}/{total} parts scored, {rows:,} rows, {rate}\n")
            self.out.flush()
            self.said = done
