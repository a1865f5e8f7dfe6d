"""What every benchmark step shares: folders, child processes, peak memory, the event sent."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the children run on the Lambda runtime's path, which has no PyYAML for maas.template
    from maas.template import FunctionSpec

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
# Caches (trained models, sam build) and logs; git-ignored with the rest of .maas.
WORK = ROOT / ".maas" / "bench"


def say(message: str) -> None:
    print(message, flush=True)


@contextmanager
def step(title: str) -> Iterator[None]:
    say(f"== {title}")
    started = time.perf_counter()
    yield
    say(f"   ({time.perf_counter() - started:.1f} s)")


@dataclass(frozen=True)
class Runtime:
    """The Python a function runs on and what it sees on its path.

    ``artifact``: the Lambda runtime's Python (3.12, no site-packages) with the ``sam build``
    package as /var/task and awslambdaric beside it, as in Lambda; ``venv``: this project's
    virtualenv with ``src/`` (what ``maas local`` runs), for machines without python3.12.
    """

    label: str
    python: tuple[str, ...]
    package: Path | None = None  # the sam build artifact: the code dir of every function
    extra_paths: tuple[Path, ...] = field(default_factory=tuple)

    def code_dir(self, spec: FunctionSpec) -> Path:
        return self.package if self.package and spec.code_uri.name == "src" else spec.task_root()

    def environment(self, spec: FunctionSpec, extra_env: dict[str, str]) -> dict[str, str]:
        """The function's Lambda-like environment (LocalFunction's) on this runtime's path."""
        from maas.lambda_runtime import LocalFunction

        env = LocalFunction(spec, extra_env).environment()
        paths = [self.code_dir(spec), *self.extra_paths]
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
        env["LAMBDA_TASK_ROOT"] = str(self.code_dir(spec))
        return env


# The warm latency with Powertools' Tracer on, as ApiFunction runs with the template's Tracing: Active (its rows
# are labelled "<label> traced"): X-Ray's daemon is a UDP socket the child binds (bench.child._xray_daemon; the SDK
# streams each subsegment to it as it closes), and every call carries the same sampled trace id (on Lambda each
# invocation has its own, and the SDK makes its segment anew).
TRACED = "traced"
XRAY_SINK = "MAAS_BENCH_XRAY_SINK"
TRACED_ENV = {
    "POWERTOOLS_TRACE_DISABLED": "false",
    "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    XRAY_SINK: "1",
}


def venv_runtime() -> Runtime:
    return Runtime("venv " + sys.version.split()[0] + " + src/", (sys.executable,))


def vm_rss_mib() -> float:
    """This process's resident set now (VmRSS)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def vm_hwm_mib(pid: int | str = "self") -> float:
    """Peak resident set (VmHWM) of one process. ru_maxrss would carry a parent's peak across fork/exec."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def child(
    runtime: Runtime, args: list[str], env: dict[str, str], log: Path, timeout: float = 600, flags: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Run ``python -m bench.child ARGS OUT`` on ``runtime``; returns the JSON the child writes to OUT."""
    out = log.with_suffix(".json")
    out.unlink(missing_ok=True)
    with log.open("w") as handle:
        code = subprocess.call(
            [*runtime.python, *flags, "-m", "bench.child", *args, str(out)],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
    if code != 0 or not out.exists():
        tail = log.read_text()[-2000:]
        raise RuntimeError(f"bench.child {args[0]} exited {code}; the end of {log}:\n{tail}")
    return dict(json.loads(out.read_text()))


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1) + "\n")


def predict_event(model: str, instances: list[Any], version: str | None = None) -> dict[str, Any]:
    """events/predict_digits.json (the API Gateway proxy event) aimed at ``model`` with these instances."""
    event = copy.deepcopy(json.loads((ROOT / "events" / "predict_digits.json").read_text()))
    event["path"] = f"/models/{model}/predict"
    event["pathParameters"] = {"name": model}
    event["requestContext"]["path"] = f"/{event['requestContext']['stage']}/models/{model}/predict"
    event["queryStringParameters"] = {"version": version} if version else None
    event["multiValueQueryStringParameters"] = {"version": [version]} if version else None
    event["body"] = json.dumps({"instances": instances})
    return event


def health_event() -> dict[str, Any]:
    """events/health.json: GET /health, a route that needs no model, no S3 and no ONNX Runtime."""
    return dict(json.loads((ROOT / "events" / "health.json").read_text()))


def digits(count: int) -> list[Any]:
    """``count`` digits from scikit-learn's set as the API takes them: 8 x 8 x 1 raw pixels (0..16)."""
    from sklearn.datasets import load_digits

    images = load_digits().images
    return [images[i % len(images)][:, :, None].tolist() for i in range(count)]
