"""A bounded load test: locust's concurrent clients against ``maas local start-api``, two models.

The API runs as a user starts it (``maas local start-api``, its own process, one local container per
function), on the benchmark's embedded S3 (``MAAS_STATE_DIR`` points it there). Each model answers
one request before the clock starts, so the figures are of warm containers; locust runs headless in
its own process and its CSV statistics are read back.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import BENCH, ROOT
from maas.embedded_s3 import free_port

BIN = Path(sys.executable).parent


def _wait_ready(url: str, api: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if api.poll() is not None:
            raise RuntimeError(f"maas local start-api exited {api.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:  # noqa: S310 - loopback only
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the local API did not answer /health within {seconds:.0f} s")


def _post(url: str, body: dict[str, Any]) -> tuple[int, str]:
    request = urllib.request.Request(  # noqa: S310 - loopback only
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return int(response.status), response.read().decode()[:300]
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()[:300]


def read_stats(path: Path) -> dict[str, dict[str, Any]]:
    """locust's ``_stats.csv``: per request name (and "Aggregated"), counts, rate and percentiles."""
    out: dict[str, dict[str, Any]] = {}
    with path.open() as handle:
        for row in csv.DictReader(handle):
            out[row["Name"]] = {
                "requests": int(row["Request Count"]),
                "failures": int(row["Failure Count"]),
                "requests_per_s": float(row["Requests/s"]),
                "p50_ms": float(row["50%"]),
                "p99_ms": float(row["99%"]),
                "max_ms": float(row["Max Response Time"]),
            }
    return out


def read_failures(path: Path, started: float) -> list[dict[str, Any]]:
    """locust's ``_failures.csv``: each error, how often, and when (seconds after the clients started)."""
    if not path.exists():
        return []
    out = []
    with path.open() as handle:
        for row in csv.DictReader(handle):
            first, last = (
                datetime.fromisoformat(row[k].replace("Z", "+00:00")).timestamp() for k in ("First Seen", "Last Seen")
            )
            out.append(
                {
                    "name": row["Name"],
                    "error": row["Error"],
                    "occurrences": int(row["Occurrences"]),
                    "first_s": max(0.0, first - started),
                    "last_s": max(0.0, last - started),
                }
            )
    return out


def run(state_dir: Path, plan: list[dict[str, Any]], users: int, seconds: int, work: Path) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    plan_path = work / "locust-plan.json"
    plan_path.write_text(json.dumps(plan))
    env = {**os.environ, "MAAS_STATE_DIR": str(state_dir), "BENCH_LOCUST_PLAN": str(plan_path)}
    with (work / "start-api.log").open("w") as api_log:
        api = subprocess.Popen(
            [str(BIN / "maas"), "local", "start-api", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=api_log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_ready(url, api)
            for request in plan:  # load each model once: the test measures warm containers
                status, body = _post(url + request["path"], request["body"])
                if status != 200:
                    raise RuntimeError(f"{request['name']}: the warm-up request got {status}: {body}")
            prefix = work / "locust"
            command = [str(BIN / "locust"), "--headless", "-u", str(users), "-r", str(users), "-t", f"{seconds}s"]
            command += ["--host", url, "-f", str(BENCH / "locustfile.py"), "--csv", str(prefix), "--only-summary"]
            started = time.time()
            with (work / "locust.log").open("w") as locust_log:
                code = subprocess.call(command, cwd=ROOT, env=env, stdout=locust_log, stderr=subprocess.STDOUT)
            stats = read_stats(Path(f"{prefix}_stats.csv"))
            errors = read_failures(Path(f"{prefix}_failures.csv"), started)
        finally:
            api.send_signal(signal.SIGTERM)
            try:
                api.wait(timeout=30)
            except subprocess.TimeoutExpired:
                api.kill()
    return {
        "users": users,
        "seconds": seconds,
        "pacing": "each client waits 0.5-1.5 s between requests (locust between(0.5, 1.5))",
        "models": [r["name"] for r in plan],
        "locust_exit": code,
        "total": stats.get("Aggregated"),
        "by_model": {k: v for k, v in stats.items() if k != "Aggregated"},
        "errors": errors,
    }
