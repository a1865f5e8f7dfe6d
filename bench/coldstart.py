"""Cold start: a new Lambda container, from process spawn to the first 200, and its peak memory.

Each run starts the Runtime Interface Emulator from aws-sam-cli with awslambdaric and the handler
behind it (as ``maas local invoke`` does, with the function's environment from template.yaml and an
empty /tmp), sends one API Gateway proxy event, and stops the clock at the 200 response. The model
comes from the embedded S3, so download, checksum and session build are inside the figure. Peak
memory is VmHWM of the runtime process (Python: awslambdaric and the handler), read before it stops.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import pagecache
from bench.common import Runtime, say, vm_hwm_mib
from bench.stats import Stat, percentile
from maas.embedded_s3 import free_port
from maas.lambda_runtime import INVOKE_PATH, rie_binary
from maas.template import FunctionSpec

SPAWN_TIMEOUT_S = 120
INIT_DURATION = re.compile(r"INIT REPORT\(durationMs: ([0-9.]+)\)")


def _invoke(port: int, event: dict[str, Any], deadline: float) -> dict[str, Any]:
    """POST the event, retrying while the emulator is not listening yet."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{INVOKE_PATH}", data=json.dumps(event).encode(), method="POST"
    )
    while True:
        try:
            with urllib.request.urlopen(request, timeout=SPAWN_TIMEOUT_S) as response:  # noqa: S310
                return dict(json.loads(response.read()))
        except urllib.error.URLError as err:
            if not isinstance(err.reason, ConnectionRefusedError) or time.monotonic() > deadline:
                raise
            time.sleep(0.002)


def _runtime_pid(rie_pid: int) -> int:
    import psutil

    children = psutil.Process(rie_pid).children(recursive=True)
    python = [c for c in children if "awslambdaric" in " ".join(c.cmdline())]
    if not python:
        raise RuntimeError("the emulator has no awslambdaric child")
    return int(python[0].pid)


def one_run(
    spec: FunctionSpec, runtime: Runtime, extra_env: dict[str, str], event: dict[str, Any], log: Path, warm: int
) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="maas-bench-cold-"))  # a new container's empty /tmp
    env = runtime.environment(spec, {**extra_env, "OPTIMIZED_MODEL_DIR": str(tmp / "maas-models"), "TMPDIR": str(tmp)})
    port = free_port()
    command = [
        str(rie_binary()),
        "--runtime-interface-emulator-address",
        f"127.0.0.1:{port}",
        "--runtime-api-address",
        f"127.0.0.1:{free_port()}",
        *runtime.python,
        "-m",
        "awslambdaric",
        spec.handler,
    ]
    with log.open("a") as handle:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=runtime.code_dir(spec), env=env, stdout=handle, stderr=subprocess.STDOUT
        )
        try:
            result = _invoke(port, event, time.monotonic() + SPAWN_TIMEOUT_S)
            cold_s = time.perf_counter() - started
            if result.get("statusCode") != 200:
                raise RuntimeError(f"{spec.logical_id}: the first response was not 200: {str(result)[:500]}")
            runtime_pid = _runtime_pid(process.pid)
            cold_rss = vm_hwm_mib(runtime_pid)
            warm_ms = []
            for _ in range(warm):
                begun = time.perf_counter()
                _invoke(port, event, time.monotonic() + SPAWN_TIMEOUT_S)
                warm_ms.append((time.perf_counter() - begun) * 1000)
            return {
                "cold_s": cold_s,
                "peak_rss_mib": cold_rss,
                "emulator_rss_mib": vm_hwm_mib(process.pid),
                "warm_invoke_p50_ms": percentile(warm_ms, 50) if warm_ms else None,
                "peak_rss_after_warm_mib": vm_hwm_mib(runtime_pid),
            }
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            shutil.rmtree(tmp, ignore_errors=True)


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    spec: FunctionSpec
    runtime: Runtime
    event: dict[str, Any]


def measure(
    variants: list[Variant], extra_env: dict[str, str], runs: int, logs: Path, round_no: int = 0, warm: int = 20
) -> dict[str, Any]:
    """``runs`` cold starts of each variant, interleaved so that a busy moment on the machine is shared."""
    results: dict[str, list[dict[str, Any]]] = {v.key: [] for v in variants}
    log = {v.key: logs / f"cold-{v.key}-{round_no}.log" for v in variants}
    for path in log.values():
        path.write_text("")
    for i in range(runs):
        for variant in variants:
            results[variant.key].append(
                one_run(variant.spec, variant.runtime, extra_env, variant.event, log[variant.key], warm)
            )
        say(f"   run {i + 1}/{runs}: " + ", ".join(f"{k} {r[-1]['cold_s']:.3f} s" for k, r in results.items()))
    return {v.key: _summary(v, results[v.key], log[v.key]) for v in variants}


def prime(variants: list[Variant], extra_env: dict[str, str], logs: Path) -> dict[str, Any]:
    """One cold start of each variant right after its files were dropped from the page cache, so read
    from disk (``bench.pagecache`` says why): not counted in the cold start figures, reported apart."""
    out = {}
    for variant in variants:
        pagecache.drop(pagecache.roots(variant.runtime))
        log = logs / f"cold-{variant.key}-uncached.log"
        out[variant.key] = one_run(variant.spec, variant.runtime, extra_env, variant.event, log, 0)["cold_s"]
    say("   uncounted, files read from disk: " + ", ".join(f"{k} {v:.3f} s" for k, v in out.items()))
    return {k: Stat.of([v]).to_dict() for k, v in out.items()}


def _summary(variant: Variant, runs: list[dict[str, Any]], log: Path) -> dict[str, Any]:
    keys = ("cold_s", "peak_rss_mib", "emulator_rss_mib", "warm_invoke_p50_ms", "peak_rss_after_warm_mib")
    figures = {k: Stat.of(r[k] for r in runs).to_dict() for k in keys if all(r[k] is not None for r in runs)}
    init_ms = [float(m) for m in INIT_DURATION.findall(log.read_text())]
    if len(init_ms) == len(runs):  # the emulator's INIT REPORT: interpreter, awslambdaric and the handler's import
        figures["init_ms"] = Stat.of(init_ms).to_dict(1)
    return {"label": variant.label, "runtime": variant.runtime.label, "runs": runs, **figures}
