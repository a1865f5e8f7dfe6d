"""Progress only on a terminal (issue 20): `maas local batch` shows rows scored with their rate and the
time left as a bar under a pty (python's pty module), a plain line per tenth of the parts in a pipe;
a training job's thinned epochs show as a bar on a terminal and not at all in a pipe."""

from __future__ import annotations

import io
import json
import os
import pty
import select

import pytest

from maas import console
from maas.local_batch import PartsProgress
from maas_core.shared.layout import parse_key

KEY = "batch/in/digits/production/big.jsonl"


def read_all(fd: int) -> str:
    chunks = []
    while select.select([fd], [], [], 0.3)[0]:
        try:
            chunks.append(os.read(fd, 65536))
        except OSError:  # the other side closed
            break
    return b"".join(chunks).decode("utf-8", "replace")


@pytest.fixture
def terminal():
    """The writing side of a pty (a terminal to isatty()) and a reader of what reached the screen."""
    master, slave = pty.openpty()
    target = os.fdopen(slave, "w")
    yield target, lambda: read_all(master)
    target.close()
    os.close(master)


@pytest.fixture
def two_of_four_parts_done(s3):
    from tests.conftest import BUCKET

    batch = parse_key(KEY, "0" * 32)
    for part, rows in ((0, 2500), (1, 2400)):
        marker = {"rows": rows, "scored": rows, "failed": 0, "duration_s": 1.0}
        s3.put_object(Bucket=BUCKET, Key=batch.part_prefix(part) + "done.json", Body=json.dumps(marker).encode())
    return s3, BUCKET, batch


def test_batch_progress_is_a_bar_with_rows_rate_and_time_left_on_a_terminal(two_of_four_parts_done, terminal):
    s3, bucket, batch = two_of_four_parts_done
    target, screen = terminal
    progress = PartsProgress(s3, bucket, batch, parts=4, out=target)
    progress.look()
    progress.bar.clear()
    shown = screen()
    assert "scoring" in shown and "2/4" in shown and "4,900 rows" in shown and "rows/s" in shown
    assert "━" in shown  # the bar itself
    assert "parts scored" not in shown  # no plain line besides


def test_batch_progress_in_a_pipe_is_plain_lines_without_a_bar(two_of_four_parts_done):
    s3, bucket, batch = two_of_four_parts_done
    out = io.StringIO()
    progress = PartsProgress(s3, bucket, batch, parts=4, out=out)
    progress.look()
    progress.look()  # nothing new: nothing said again
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("  2/4 parts scored, 4,900 rows, ")
    assert "\x1b" not in out.getvalue() and "━" not in out.getvalue()


def test_a_jobs_epochs_are_a_bar_on_a_terminal_and_absent_in_a_pipe(terminal, monkeypatch):
    monkeypatch.setattr(console, "_verbose", False)
    job = b"".join(b"epoch=%d of=20 accuracy=0.9 loss=0.1\n" % n for n in range(1, 4))
    target, screen = terminal
    console.condense_epochs(io.BytesIO(job), target)
    shown = screen()
    assert "epochs" in shown and "3/20" in shown and "━" in shown  # epochs 2 and 3 are a bar, not lines
    assert "epoch=2" not in shown and "epoch=3" not in shown
    piped = io.StringIO()
    console.condense_epochs(io.BytesIO(job), piped)
    assert piped.getvalue().splitlines() == ["epoch=1 of=20 accuracy=0.9 loss=0.1"]
