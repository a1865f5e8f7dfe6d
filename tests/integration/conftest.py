"""The local stack as a fixture: `maas local start-api` in its own process, models published into it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from tests_support import MAAS, ROOT, free_port, http


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """start-api in its own process with a fresh state folder; the digits model published into it."""
    state = tmp_path_factory.mktemp("maas-state")
    env = {**os.environ, "MAAS_STATE_DIR": str(state), "MAAS_PROJECT_ROOT": str(ROOT)}
    for var in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(var, None)
    port = free_port()
    log = (state / "start-api.log").open("w")
    # Parts of 1 MB, so that the 10,000-row batch file is fanned out as a 5 GB one would be.
    env_vars = state / "env-vars.json"
    env_vars.write_text(json.dumps({"BatchFunction": {"BATCH_PART_BYTES": "1000000"}}))
    process = subprocess.Popen(
        [*MAAS, "--env-vars", str(env_vars), "local", "start-api", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            status, health = http("GET", f"{url}/health")
            if status == 200:
                break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"start-api did not come up:\n{(state / 'start-api.log').read_text()}")
        time.sleep(0.2)

    from tests_support import build_digits_onnx, build_two_input_onnx, digits_manifest, two_input_manifest

    from maas.embedded_s3 import EmbeddedS3
    from maas.stack import load_template
    from shared.registry import Registry

    template = load_template(str(ROOT / "template.yaml"))
    s3 = EmbeddedS3(state, template.bucket_names()).start()  # reuses the server start-api runs
    assert not s3.owns_server
    bucket = template.function("ApiFunction").environment["MODEL_BUCKET"]
    registry = Registry(bucket, s3.client())
    published = registry.publish("digits", build_digits_onnx(), digits_manifest())
    registry.publish("blend", build_two_input_onnx(), two_input_manifest())
    yield {
        "container": health["container"],
        "url": url,
        "env": env,
        "state": state,
        "version": published["version"],
        "process": process,
        "s3": s3,
        "bucket": bucket,
    }
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)
    log.close()
