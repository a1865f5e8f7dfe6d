"""A batch file survives a crash of the local stack: `maas local start-api` is killed with SIGKILL
while it scores a file (its queue, held in memory, dies with it), and the next start-api announces
the unfinished file again and finishes it, every row accounted for."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests_support import MAAS, ROOT, build_digits_onnx, digits_manifest, free_port, http

pytestmark = pytest.mark.integration

ROWS = 3_000
KEY = "batch/in/digits/production/crash.jsonl"


def start(state: Path) -> dict[str, Any]:
    """start-api in a session of its own, so SIGKILL takes its Lambda containers down with it."""
    env = {**os.environ, "MAAS_STATE_DIR": str(state), "MAAS_PROJECT_ROOT": str(ROOT)}
    for var in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(var, None)
    env_file = state / "env-vars.json"  # 100 kB parts: the file is scored as several queued parts
    env_file.write_text(json.dumps({"BatchFunction": {"BATCH_PART_BYTES": "100000"}}))
    log = (state / "start-api.log").open("a")
    url = f"http://127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [*MAAS, "--env-vars", str(env_file), "local", "start-api", "--port", url.rsplit(":", 1)[1]],
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while True:
        try:
            if http("GET", f"{url}/health")[0] == 200:
                return {"process": process, "log": log, "url": url}
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError(f"start-api did not come up:\n{(state / 'start-api.log').read_text()}")
        time.sleep(0.2)


def kill(api: dict[str, Any]) -> None:
    if api["process"].poll() is None:
        os.killpg(api["process"].pid, signal.SIGKILL)
    api["process"].wait(timeout=30)
    api["log"].close()


def find(s3: Any, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_a_file_in_flight_when_start_api_is_killed_is_finished_after_a_restart(tmp_path):
    from sklearn.datasets import load_digits

    from maas.embedded_s3 import EmbeddedS3
    from maas.stack import load_template
    from maas_core.shared.registry import Registry

    template = load_template(str(ROOT / "template.yaml"))
    bucket = template.function("ApiFunction").environment["MODEL_BUCKET"]
    images = load_digits().images[:, :, :, None]
    body = "".join(json.dumps({"id": i, "instances": [images[i % len(images)].tolist()]}) + "\n" for i in range(ROWS))

    api = start(tmp_path)
    try:
        s3 = EmbeddedS3(tmp_path, template.bucket_names()).start()  # reuses the server start-api owns
        assert not s3.owns_server
        client = s3.client()
        Registry(bucket, client).publish("digits", build_digits_onnx(), digits_manifest())
        etag = client.put_object(Bucket=bucket, Key=KEY, Body=body.encode())["ETag"].strip('"')
        prefix = f"batch/out/digits/production/crash.jsonl/{etag}/"
        deadline = time.monotonic() + 60  # mid-way: a part scored, the file not finished
        while not any(k.endswith(".done.json") for k in find(client, bucket, prefix)) and time.monotonic() < deadline:
            time.sleep(0.05)
        kill(api)
    finally:
        kill(api)
    state_after_crash = (tmp_path / "s3" / "server.json").exists()  # left behind: nobody could remove it

    with EmbeddedS3(tmp_path, template.bucket_names()) as disk:  # what the killed server kept, read back
        left = find(disk.client(), bucket, prefix)
    assert state_after_crash and left and prefix + "summary.json" not in left, left

    api = start(tmp_path)
    try:
        s3 = EmbeddedS3(tmp_path, template.bucket_names()).start()
        client = s3.client()
        deadline = time.monotonic() + 180
        summary = None
        while summary is None and time.monotonic() < deadline:
            try:
                summary = json.loads(client.get_object(Bucket=bucket, Key=prefix + "summary.json")["Body"].read())
            except client.exceptions.NoSuchKey:
                time.sleep(0.3)
        assert summary is not None, (tmp_path / "start-api.log").read_text()[-3000:]
        assert (summary["status"], summary["rows"], summary["scored"], summary["failed"]) == (
            "succeeded",
            ROWS,
            ROWS,
            0,
        )
        ids = []
        for uri in summary["results"]:
            text = client.get_object(Bucket=bucket, Key=uri.removeprefix(f"s3://{bucket}/"))["Body"].read().decode()
            ids += [json.loads(line)["id"] for line in text.splitlines() if line]
        assert ids == list(range(ROWS))  # every row once, in order: parts done before the crash kept
        log = (tmp_path / "start-api.log").read_text()
        assert f"re-announced s3://{bucket}/{KEY}" in log
        status, answer = http(
            "POST", f"{api['url']}/models/digits/predict", json.dumps({"instances": [images[0].tolist()]}).encode()
        )
        assert status == 200 and answer["predictions"][0]["label"] == "0"  # published before the crash, served after
    finally:
        kill(api)
