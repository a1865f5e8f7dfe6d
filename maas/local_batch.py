"""`maas local batch FILE --model NAME`: drop a file into the embedded stack and fetch what came out.

The file goes to ``batch/in/<model>/<alias or version>/<file name>`` in the model bucket; the
embedded S3 announces it to the template's queue, whose poller invokes BatchFunction through the
Lambda RIE. When the summary appears, results, errors and summary are downloaded into DIR.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from maas.stack import load_template, local_client, queue_consumers, s3_for


def out_prefix(model: str, ref: str, name: str, etag: str) -> str:
    return f"batch/out/{model}/{ref}/{name}/{etag.strip(chr(34))}/"


def run(
    file: Path,
    model: str,
    ref: str,
    out_dir: Path,
    timeout_s: float,
    template_path: str | None = None,
    env_vars: str | None = None,
) -> int:
    template = load_template(template_path, env_vars)
    bucket = template.function("ApiFunction").environment["MODEL_BUCKET"]
    key = f"batch/in/{model}/{ref}/{file.name}"
    with s3_for(template) as env, queue_consumers(template, env) as consumers:
        if not consumers:
            print("maas: no function in template.yaml consumes a queue, or S3 is not the embedded one")
            return 2
        s3 = local_client(env, "s3")
        with file.open("rb") as body:
            etag = s3.put_object(Bucket=bucket, Key=key, Body=body)["ETag"]
        prefix = out_prefix(model, ref, file.name, etag)
        print(
            f"put s3://{bucket}/{key} ({file.stat().st_size:,} bytes); waiting for s3://{bucket}/{prefix}summary.json"
        )
        summary = _wait_for_summary(s3, bucket, prefix + "summary.json", timeout_s)
        if summary is None:
            print(f"maas: no summary after {timeout_s:.0f} s; the message may be retrying or in the dead-letter queue")
            return 1
        out_dir.mkdir(parents=True, exist_ok=True)
        keys = [prefix + "summary.json"]
        if summary.get("status") == "succeeded":  # a failed file has a summary only
            keys += [uri.removeprefix(f"s3://{bucket}/") for uri in summary["results"] + summary["errors"]]
        for key in keys:  # parts/00001.results.jsonl -> parts-00001.results.jsonl
            s3.download_file(bucket, key, str(out_dir / key.removeprefix(prefix).replace("/", "-")))
        print(json.dumps(summary, indent=2))
        return 0 if summary.get("status") == "succeeded" else 1


def _wait_for_summary(s3: Any, bucket: str, key: str, timeout_s: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return dict(json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
        except s3.exceptions.NoSuchKey:
            time.sleep(0.3)
    return None
