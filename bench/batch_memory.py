"""Batch scoring at scale: peak memory and rows/s of BatchFunction's core on a large JSON Lines file.

    python bench/batch_memory.py --size-mb 500

Runs moto's S3 server in its own process (so its copy of the file is not counted), publishes the
digits classifier, uploads a generated JSON Lines file of the requested size under batch/in/, and
scores it in a fresh child process exactly as BatchFunction does (streamed, chunked, multipart
output). Prints the child's peak RSS (VmHWM) and throughput; exits 1 if RSS goes over --max-rss-mb.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "maas-bench-models"

CHILD = r"""
import json, os, sys, time
from shared.aws import s3_client
from shared.batch import score_object
from shared.model_cache import ModelCache
key, etag, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
def hwm_mib():
    # VmHWM: this process's peak RSS. (ru_maxrss would carry the parent's peak across fork/exec.)
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
before = hwm_mib()
started = time.perf_counter()
bucket = os.environ["MODEL_BUCKET"]
summary = score_object(s3_client(), bucket, key, etag, ModelCache(bucket), chunk)
summary["wall_s"] = round(time.perf_counter() - started, 2)
summary["peak_rss_mib"] = round(hwm_mib(), 1)
summary["rss_before_scoring_mib"] = round(before, 1)
print(json.dumps(summary))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=500)
    parser.add_argument("--chunk-rows", type=int, default=512)
    parser.add_argument("--max-rss-mb", type=float, default=300)
    args = parser.parse_args()

    import boto3
    from sklearn.datasets import load_digits

    sys.path.insert(0, str(ROOT / "tests"))  # the bench publishes the tests' real digits classifier
    from tests_support import build_digits_onnx, digits_manifest

    from maas.embedded_s3 import free_port
    from shared.registry import Registry

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "MODEL_BUCKET": BUCKET,
    }
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL_S3"],
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",  # noqa: S106 - moto's server takes any credentials
        )
        for _ in range(100):
            try:
                s3.create_bucket(Bucket=BUCKET)
                break
            except Exception:
                time.sleep(0.1)
        Registry(BUCKET, s3).publish("digits", build_digits_onnx(), digits_manifest())
        lines = [json.dumps(img[:, :, None].tolist()) + "\n" for img in load_digits().images]
        target = int(args.size_mb * 1024 * 1024)
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as handle:
            written = rows = 0
            while written < target:
                line = lines[rows % len(lines)]
                handle.write(line)
                written += len(line)
                rows += 1
            path = handle.name
        key = "batch/in/digits/production/bench.jsonl"
        started = time.perf_counter()
        s3.upload_file(path, BUCKET, key)
        os.unlink(path)
        etag = s3.head_object(Bucket=BUCKET, Key=key)["ETag"]
        print(f"input: {written / 2**20:,.0f} MiB, {rows:,} rows (uploaded in {time.perf_counter() - started:.1f} s)")
        child = subprocess.run(
            [sys.executable, "-c", CHILD, key, etag, str(args.chunk_rows)], env=env, capture_output=True, text=True
        )
        if child.returncode != 0:
            print(child.stderr[-3000:])
            return 1
        summary = json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        server.terminate()
    print(
        f"batch scoring: {summary['rows']:,} rows ({summary['failed']} failed) in {summary['wall_s']} s = "
        f"{summary['rows'] / summary['wall_s']:,.0f} rows/s; peak RSS {summary['peak_rss_mib']} MiB "
        f"(goal <= {args.max_rss_mb:.0f} MiB; {summary['rss_before_scoring_mib']} MiB after imports)"
    )
    return 0 if summary["peak_rss_mib"] <= args.max_rss_mb else 1


if __name__ == "__main__":
    sys.exit(main())
