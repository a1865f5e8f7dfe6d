"""`maas local start-api` starts cleanly every time (issue 20): its port is bound before anything else
starts, the Lambda emulators take ports that cannot be the one asked for, a taken port or a project
already served is said in one line (exit 2), and a start right after a stop serves its first request."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from bench.loading import matmul_chain
from maas.models_cli import manifest_from_onnx
from tests_support import MAAS, ROOT, build_digits_onnx, digits_manifest, http

pytestmark = pytest.mark.integration

STARTS = 20
# A model of the size that showed the race (a 134 MB one then), kept small enough for make test.
LARGE_BYTES = 64 * 2**20


def env_for(state: Path) -> dict[str, str]:
    env = {**os.environ, "MAAS_STATE_DIR": str(state), "MAAS_PROJECT_ROOT": str(ROOT)}
    for var in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(var, None)
    return env


def ephemeral_port() -> int:
    """A port inside the kernel's ephemeral range, free now: the kind a user draws at random."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(state: Path, port: int) -> dict[str, Any]:
    """start-api on this port; returned once it says it serves (or it exited)."""
    log_path = state / f"start-api-{time.monotonic_ns()}.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [*MAAS, "local", "start-api", "--port", str(port)], env=env_for(state), stdout=log, stderr=log
    )
    deadline = time.monotonic() + 60
    while "local API on" not in log_path.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            stop({"process": process, "log": log})
            raise AssertionError(f"start-api did not come up on {port}:\n{log_path.read_text()}")
        time.sleep(0.02)
    return {"process": process, "log": log, "log_path": log_path, "url": f"http://127.0.0.1:{port}"}


def stop(api: dict[str, Any]) -> None:
    if api["process"].poll() is None:
        api["process"].send_signal(signal.SIGINT)
    try:
        api["process"].wait(timeout=30)
    finally:
        api["log"].close()


def test_start_api_on_a_port_of_the_ephemeral_range_starts_cleanly_twenty_times_in_a_row(tmp_path):
    """The emulators used to take free ports from the ephemeral range before the API bound its own,
    so the port asked for could be one of theirs ("Address already in use")."""
    from maas.embedded_s3 import EmbeddedS3
    from maas.stack import load_template

    low, high = (int(p) for p in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    # One S3 server (this process's) that every start reuses, as it would one `maas train local` runs:
    # a start then costs half a second, not a server's start and stop (the next test covers those).
    s3 = EmbeddedS3(tmp_path, load_template(str(ROOT / "template.yaml")).bucket_names()).start()
    try:
        for _ in range(STARTS):
            start_and_stop(tmp_path, low, high)
    finally:
        s3.stop()


def start_and_stop(state: Path, low: int, high: int) -> None:
    port = ephemeral_port()
    assert low <= port <= high
    api = start(state, port)
    try:
        # A parent resource no route names (/v2/models): the local API answers it itself (the API's
        # MISSING_AUTHENTICATION_TOKEN response), so this checks the API serves the port, no Lambda called.
        assert http("GET", f"{api['url']}/v2/models")[0] == 404
    finally:
        stop(api)
    assert api["process"].returncode == 0, api["log_path"].read_text()
    assert "Address already in use" not in api["log_path"].read_text()


def test_a_taken_port_is_refused_in_one_line_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*MAAS, "local", "start-api", "--port", str(port)],
            env=env_for(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"maas: port {port} is in use on 127.0.0.1; stop what listens there or pick another with --port"
    ]
    assert not (tmp_path / "s3" / "server.json").exists()  # no S3 server was started


def test_a_start_right_after_a_stop_serves_its_first_request_and_a_second_start_names_the_first(tmp_path):
    """The stopped stack owned the embedded S3: the next one must not reuse a server about to vanish
    (its first requests answered 503 registry_unavailable), on the same port, at once."""
    from maas.embedded_s3 import EmbeddedS3
    from maas.stack import load_template
    from maas_core.shared.registry import Registry

    template = load_template(str(ROOT / "template.yaml"))
    bucket = template.function("ApiFunction").environment["MODEL_BUCKET"]
    port = ephemeral_port()
    first = start(tmp_path, port)
    try:
        s3 = EmbeddedS3(tmp_path, template.bucket_names()).start()
        assert not s3.owns_server
        registry = Registry(bucket, s3.client())
        registry.publish("digits", build_digits_onnx(), digits_manifest())
        body = json.dumps({"instances": [[[[0.0]] * 8] * 8]}).encode()
        assert http("POST", f"{first['url']}/models/digits/predict", body)[0] == 200
        # The stack that showed the race had served a large model: its embedded S3 took longer to stop.
        large = matmul_chain(LARGE_BYTES, side=512)
        registry.publish("large", large, manifest_from_onnx(large, None, "large.onnx"))
        large_body = json.dumps({"instances": [[0.5] * 512]}).encode()
        assert http("POST", f"{first['url']}/models/large/predict", large_body)[0] == 200

        second = subprocess.run(
            [*MAAS, "local", "start-api", "--port", str(ephemeral_port())],
            env=env_for(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2
        assert f"already served by process {first['process'].pid} on {first['url']}" in second.stderr

        first["process"].send_signal(signal.SIGINT)  # and start again at once, not waiting for it to exit
        again = start(tmp_path, port)
    finally:
        stop(first)
    try:
        status, answer = http("POST", f"{again['url']}/models/large/predict", large_body)
        assert status == 200, answer
        status, answer = http("POST", f"{again['url']}/models/digits/predict", body)
        assert status == 200, answer
    finally:
        stop(again)


def test_the_ports_the_stack_picks_for_itself_are_below_the_ephemeral_range():
    """Those the emulators get: the kernel never hands them out, so none is the port a user drew."""
    from maas.embedded_s3 import free_port  # where bench/ and tests_support take it from

    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert all(free_port() < low for _ in range(50))


def test_an_embedded_s3_is_reused_only_while_its_owner_lives_and_has_not_retired_it(tmp_path):
    import threading

    from maas.embedded_s3 import EmbeddedS3

    owner = EmbeddedS3(tmp_path, ["maas-reuse-test"]).start()
    try:
        reused = EmbeddedS3(tmp_path, ["maas-reuse-test"]).start()
        assert not reused.owns_server and reused.endpoint == owner.endpoint

        # A server.json naming a process that has exited (a crash, then another program on its port).
        dead = subprocess.Popen(["true"])
        dead.wait()
        server_json = tmp_path / "s3" / "server.json"
        server_json.write_text(json.dumps({"endpoint": owner.endpoint, "pid": dead.pid}))
        fresh = EmbeddedS3(tmp_path, ["maas-reuse-test"]).start()
        assert fresh.owns_server and fresh.endpoint != owner.endpoint
        fresh.stop()

        # An owner that is stopping: the next start waits for it to be down, then starts its own.
        server_json.write_text(json.dumps({"endpoint": owner.endpoint, "pid": os.getpid()}))
        owner.retire()
        started: list[EmbeddedS3] = []
        waiting = threading.Thread(target=lambda: started.append(EmbeddedS3(tmp_path, ["maas-reuse-test"]).start()))
        waiting.start()
        waiting.join(timeout=0.5)
        assert not started  # held by the retired owner's start lock
    finally:
        owner.stop()
    waiting.join(timeout=30)
    assert started and started[0].owns_server and started[0].endpoint != owner.endpoint
    started[0].stop()
