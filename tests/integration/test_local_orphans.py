"""A `maas local start-api` killed with SIGKILL leaves no Lambda container behind.

Its emulators are started with a parent-death signal (maas/lambda_runtime.py): without it, every
killed stack left its Runtime Interface Emulators and warm handler processes running, holding their
ports and memory until the machine restarted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from tests_support import start_api

pytestmark = pytest.mark.integration


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process tree from /proc (Linux)")
def test_a_killed_start_api_takes_its_lambda_containers_with_it(tmp_path):
    api = start_api(tmp_path, {})
    process = api["process"]
    emulators = [p for p in children(process.pid) if b"aws-lambda-rie" in Path(f"/proc/{p}/cmdline").read_bytes()]
    handlers = [c for p in emulators for c in children(p)]
    try:
        assert emulators, "start-api runs one emulator per function"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(alive(p) for p in emulators + handlers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in emulators + handlers if alive(p)], "containers outlived their start-api"
    finally:
        api["log"].close()
        for pid in emulators + handlers:  # left behind only if the test failed
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
