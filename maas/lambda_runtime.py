"""One local Lambda container: the Runtime Interface Emulator from aws-sam-cli plus awslambdaric.

The emulator runs on the host (no Docker), bound to 127.0.0.1, and starts the handler process on
the first invoke; the process stays warm between invokes like a Lambda container. The function's
handler, timeout, memory and environment come from template.yaml.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from maas.ports import free_port
from maas.template import FunctionSpec

INVOKE_PATH = "/2015-03-31/functions/function/invocations"
PR_SET_PDEATHSIG = 1  # linux/prctl.h
START_ATTEMPTS = 5
LAMBDA_TMP = "/tmp"  # noqa: S108 - Lambda's writable folder, which each local container gets its own of


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that has the kernel stop the emulator when the command that started it dies, even
    by SIGKILL (its handler process exits with it), so no container outlives `maas local start-api`.

    Linux only, and only from the main thread: the signal follows the thread that forked, and a worker
    thread that ends would take the emulator with it."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    import ctypes
    import signal

    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the prctl: nobody would send the signal
            os._exit(1)

    return preexec


def rie_binary() -> Path:
    import samcli

    arch = "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64"
    path = Path(samcli.__file__).parent / "local" / "rapid" / f"aws-lambda-rie-{arch}"
    if not path.exists():
        raise SystemExit(f"maas: the Lambda Runtime Interface Emulator is missing at {path}; reinstall aws-sam-cli")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


class FunctionError(RuntimeError):
    """The handler raised, crashed or timed out: Lambda reports this as a function error."""

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(payload.get("errorMessage", "function error"))
        self.payload = payload


class LocalFunction:
    def __init__(
        self, spec: FunctionSpec, extra_env: dict[str, str], log: IO[str] | None = None, verbose: bool = False
    ) -> None:
        self.spec = spec
        self.extra_env = extra_env
        self.log = log
        self.verbose = verbose
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._tmp: Path | None = None  # this container's /tmp, from start() to stop()
        self._lock = threading.Lock()  # one invoke at a time per container, as in Lambda

    def environment(self) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - Lambda's HOME-less sandbox uses /tmp too
            "LANG": "C.UTF-8",
            "TZ": "UTC",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(self.spec.task_root()),  # like /var/task on Lambda
            "LAMBDA_TASK_ROOT": str(self.spec.task_root()),
            "AWS_LAMBDA_FUNCTION_NAME": self.spec.logical_id,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(self.spec.timeout),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.spec.logical_id}",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{self.spec.runtime}",
            # A local container starts for the request that is waiting, as Lambda's on-demand ones do.
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            # No X-Ray daemon locally: Powertools' tracer would only warn.
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
        env.update(self.spec.environment)
        if self._tmp is not None:
            # Each Lambda execution environment has a /tmp of its own that starts empty: so does each
            # local container, or one run's verified model files would serve the next run. Only the
            # template's own /tmp paths move there; a folder given with --env-vars is used as given.
            for name, value in self.spec.environment.items():
                if name not in self.spec.overridden and (value == LAMBDA_TMP or value.startswith(f"{LAMBDA_TMP}/")):
                    env[name] = str(self._tmp) + value.removeprefix(LAMBDA_TMP)
            env["TMPDIR"] = str(self._tmp)
        env.update(self.extra_env)
        return env

    def start(self) -> LocalFunction:
        self._tmp = Path(tempfile.mkdtemp(prefix=f"maas-{self.spec.logical_id}-tmp-"))
        # The ports are checked free, then bound by the emulator: another program may bind one between
        # (rarely, since they come from below the ephemeral range, maas.ports); the emulator then
        # exits at once, and another pair is tried.
        for _ in range(START_ATTEMPTS):
            if self._start_once(free_port(), free_port()):
                return self
        raise SystemExit(f"maas: the emulator for {self.spec.logical_id} could not bind a port; see the log above")

    def _start_once(self, port: int, runtime_api_port: int) -> bool:
        """Start the emulator on these ports; False when it exited at start (a port was taken)."""
        self.port = port
        command = [
            str(rie_binary()),
            "--log-level",
            "info" if self.verbose else "error",  # its INIT/INVOKE lines only with --verbose, as sam's
            "--runtime-interface-emulator-address",
            f"127.0.0.1:{port}",
            "--runtime-api-address",
            f"127.0.0.1:{runtime_api_port}",
            sys.executable,
            "-m",
            "awslambdaric",
            self.spec.handler,
        ]
        self._process = subprocess.Popen(
            command,
            cwd=self.spec.task_root(),
            env=self.environment(),
            stdout=self.log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent(),  # one prctl call: no locks, safe beside threads
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=0.5)
            except urllib.error.HTTPError:
                return True  # it answers (404 on /): ready
            except OSError:
                time.sleep(0.05)
                continue
            return True
        raise SystemExit(f"maas: the emulator for {self.spec.logical_id} did not start within 10 s")

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._process = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> LocalFunction:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def invoke(self, event: Any) -> Any:
        """Invoke with an event; returns the handler's result or raises FunctionError."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{INVOKE_PATH}",
            data=json.dumps(event).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with self._lock, urllib.request.urlopen(request, timeout=self.spec.timeout + 10) as response:  # noqa: S310
            payload = json.loads(response.read() or b"null")
        if isinstance(payload, dict) and "errorType" in payload and "errorMessage" in payload:
            raise FunctionError(payload)
        return payload
