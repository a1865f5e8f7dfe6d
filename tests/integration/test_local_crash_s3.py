"""The embedded S3 survives a SIGKILL: every write whose response a client got is there after a restart.

The server runs in its own process (as `maas local start-api` runs it); this test writes to it over
HTTP, kills it with SIGKILL in the middle of a stream of writes, and starts a fresh one on the same
state folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from maas.embedded_s3 import EmbeddedS3

pytestmark = pytest.mark.integration

BUCKET = "maas-crash-test"
OWNER = """
import sys, time
from pathlib import Path
from maas.embedded_s3 import EmbeddedS3
s3 = EmbeddedS3(Path(sys.argv[1]), [sys.argv[2]]).start()
print(s3.endpoint, flush=True)
time.sleep(600)
"""


def start_owner(state: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(state), BUCKET], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def test_every_acknowledged_write_survives_a_sigkill(tmp_path):
    process, endpoint = start_owner(tmp_path)
    try:
        writer = EmbeddedS3(tmp_path, [BUCKET]).start()  # reuses the owner's server, as other commands do
        assert writer.endpoint == endpoint and not writer.owns_server
        s3 = writer.client()
        s3.put_object(Bucket=BUCKET, Key="gone", Body=b"deleted before the crash")
        s3.delete_object(Bucket=BUCKET, Key="gone")
        acknowledged: dict[str, str] = {}
        stop = threading.Event()

        def write() -> None:
            i = 0
            while not stop.is_set():
                try:
                    etag = s3.put_object(Bucket=BUCKET, Key=f"rows/{i:05d}.json", Body=f'{{"row": {i}}}'.encode())
                except Exception:
                    return  # the server is gone: this write was never acknowledged
                acknowledged[f"rows/{i:05d}.json"] = etag["ETag"]
                i += 1

        thread = threading.Thread(target=write)
        thread.start()
        time.sleep(1.5)  # some hundreds of writes in, then killed between two of them or in one
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        stop.set()
        thread.join(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert len(acknowledged) > 20

    with EmbeddedS3(tmp_path, [BUCKET]) as restarted:  # server.json names a dead server: a fresh one loads the disk
        assert restarted.owns_server
        s3 = restarted.client()
        keys = {
            o["Key"]: o["ETag"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
            for o in page.get("Contents", [])
        }
        assert "gone" not in keys
        missing = sorted(set(acknowledged) - set(keys))
        assert not missing, f"{len(missing)} acknowledged writes lost, first {missing[:3]}"
        assert all(keys[k] == etag for k, etag in acknowledged.items())
        last = max(acknowledged)
        assert s3.get_object(Bucket=BUCKET, Key=last)["Body"].read() == f'{{"row": {int(last[5:10])}}}'.encode()
