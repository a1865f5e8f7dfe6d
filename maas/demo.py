"""`maas demo` / `make demo`: the main job end to end on the embedded local stack.

Trains the digits CNN as a SageMaker-style job, publishes int8 ONNX to the embedded S3 registry,
starts the local API (API Gateway emulation + Lambda RIE), sends real HTTP predictions for held-out
digits that the job never saw, then drops those digits as a file for batch scoring.
"""

from __future__ import annotations

import json
import statistics
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from maas.local_api import LocalApi
from maas.local_batch import wait_for_summary
from maas.paths import state_dir
from maas.stack import load_template, local_client, local_functions, queue_consumers, s3_for
from maas.train_local import run_job
from maas_core.shared.layout import input_key, parse_key
from maas_core.shared.manifest import Manifest

MODEL = "digits"


def split_digits(folder: Path, holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Write a train channel as a user would (npz + labels.json) and keep `holdout` digits back."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.images.astype("float32")[..., None]
    y = digits.target.astype("int64")
    order = np.random.default_rng(seed).permutation(len(y))
    held, train = order[:holdout], order[holdout:]
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "digits.npz", x=x[train], y=y[train])
    (folder / "labels.json").write_text(json.dumps([str(i) for i in range(10)]))
    return x[held], y[held]


def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
    request = urllib.request.Request(  # noqa: S310 - loopback only
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            status, payload = response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        status, payload = err.code, json.loads(err.read() or b"{}")
    return status, payload, (time.perf_counter() - started) * 1000


def main(epochs: int, samples: int, seed: int = 7) -> int:
    template = load_template()
    work = state_dir() / "demo"
    data = work / "channel"
    held_x, held_y = split_digits(data, holdout=max(samples, 200), seed=seed)
    print(f"== 1/4 training: Keras CNN on {data} (SageMaker contract, local /opt/ml tree)", flush=True)
    with s3_for(template) as s3_env:
        bucket = template.function("ApiFunction").environment["MODEL_BUCKET"]
        env = {**s3_env, "MAAS_MODEL_BUCKET": bucket}
        code = run_job(state_dir() / "opt_ml", data, {"epochs": epochs, "model_name": MODEL}, env)
        if code != 0:
            print(f"training job failed (exit {code}); see {state_dir() / 'opt_ml' / 'output' / 'failure'}")
            return code
        published = state_dir() / "opt_ml" / "output" / "data" / "published.json"
        manifest = Manifest.from_json(json.loads(published.read_text()))
        comp = manifest.compression
        print(
            f"   published with {comp['method']}: {comp['compressed_size_bytes']:,} bytes "
            f"(fp32 {comp['fp32_size_bytes']:,}), held-out accuracy {manifest.metrics['accuracy']:.4f}"
        )
        print(f"   version {manifest.version}; every request below pins it with ?version=")
        print("== 2/4 local API: API Gateway emulation -> Lambda RIE -> ApiFunction", flush=True)
        log = (work / "lambda.log").open("w")
        with local_functions(template, ["ApiFunction"], s3_env, log=log) as functions:
            api = LocalApi(functions, template.api_stage(), port=0, quiet=True).start()
            try:
                code = _predict(api.url, manifest.version, held_x[:samples], held_y[:samples])
            finally:
                api.stop()
        if code != 0:
            return code
        with queue_consumers(template, s3_env, log=log):
            return _batch(local_client(s3_env, "s3"), bucket, manifest.version, held_x, held_y)


def _batch(s3: Any, bucket: str, version: str, images: np.ndarray, labels: np.ndarray) -> int:
    key = input_key(MODEL, version, "demo/held-out.jsonl")
    print(
        f"== 4/4 batch: put s3://{bucket}/{key} ({len(images)} rows, 1 malformed) -> SQS -> BatchFunction", flush=True
    )
    rows = [json.dumps({"id": int(i), "instances": [img.tolist()]}) for i, img in enumerate(images)]
    rows.insert(len(rows) // 2, "{this row is not JSON")
    etag = s3.put_object(Bucket=bucket, Key=key, Body=("\n".join(rows) + "\n").encode())["ETag"]
    batch = parse_key(key, etag)
    summary = wait_for_summary(s3, bucket, batch.summary_key, 120)
    if summary is None:
        print("   no summary after 120 s")
        return 1
    results_key = summary["results"][0].removeprefix(f"s3://{bucket}/")
    results = [json.loads(x) for x in s3.get_object(Bucket=bucket, Key=results_key)["Body"].read().splitlines()]
    correct = sum(r["prediction"]["label"] == str(labels[r["id"]]) for r in results)
    print(
        f"   {summary['scored']} scored, {summary['failed']} in errors.jsonl, accuracy {correct / len(results):.3f}, "
        f"{summary['rows_per_s']:,.0f} rows/s; outputs under s3://{bucket}/{batch.out_prefix}"
    )
    print("next: `.venv/bin/maas local start-api --port 3000`, then POST to /models/digits/predict (production alias)")
    return 0 if summary["scored"] == len(images) and summary["failed"] == 1 else 1


def _predict(url: str, version: str, images: np.ndarray, labels: np.ndarray) -> int:
    endpoint = f"{url}/models/{MODEL}/predict?version={version}"
    print(f"== 3/4 HTTP predictions: POST {endpoint}", flush=True)
    print(f"   {'true':>4} {'pred':>4} {'score':>6} {'ms':>7}  version")
    latencies, correct = [], 0
    for image, label in zip(images, labels, strict=True):
        status, payload, ms = post(endpoint, {"instances": [image.tolist()]})
        if status != 200:
            print(f"   request failed: {status} {payload}")
            return 1
        pred = payload["predictions"][0]
        correct += pred["label"] == str(label)
        latencies.append(ms)
        mark = "ok" if pred["label"] == str(label) else "MISS"
        print(f"   {label:>4} {pred['label']:>4} {pred['score']:>6.3f} {ms:>7.1f}  {payload['version']}  {mark}")
    status, payload, _ = post(endpoint, {"instances": [images[0][..., 0].tolist()]})
    print(f"   a wrong shape gets {status}: {payload.get('error')}")
    warm = latencies[1:] or latencies
    print(
        f"== {correct}/{len(labels)} correct; first (cold) request {latencies[0]:.0f} ms, "
        f"warm p50 {statistics.median(warm):.1f} ms"
    )
    return 0 if correct >= 0.8 * len(labels) else 1
