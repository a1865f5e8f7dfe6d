"""How the CLI talks: libraries quiet unless ``--verbose``, one-line errors, tables, and progress bars
only on a terminal (plain lines in CI logs and pipes).

Exit codes (the CLI's ``--help`` says the same): 0 done, 1 a job or request failed, 2 a usage error
or something to fix first (a port in use, a model that does not exist, an endpoint that does not
answer), each said in one line with what to do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator
from typing import IO, Any

OK, FAILED, USAGE = 0, 1, 2

_verbose = False

# Libraries whose logs below WARNING are no news to a user of the CLI.
QUIET_LOGGERS = ("moto", "werkzeug", "botocore", "boto3", "s3transfer", "urllib3", "absl", "tensorflow", "tf2onnx")

# Lines libraries write to stderr on their own (C++ loggers that no Python logging level reaches):
# TensorFlow's absl INFO lines (oneDNN's notice among them, printed before absl is initialised, so
# TF_CPP_MIN_LOG_LEVEL does not reach it), onnxruntime's info and warnings (its coloured
# CleanUnusedInitializersAndNodeArgs, one per session built), and the quantiser's advice on the root
# logger. Errors (E lines, tracebacks) always pass.
LIBRARY_NOISE = re.compile(
    r"^(?:"
    r"WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|I\d{4} [\d:.]+\s+\d+ \S+:\d+\]"
    r"|(?:\x1b\[[\d;]*m)?[\d-]+ [\d:.]+ \[[VIW]:onnxruntime:"
    r"|WARNING:root:Please consider (?:to run )?pre-processing before quantization"
    r")"
)


class _QuantiserAdvice(logging.Filter):
    """The quantiser logs its advice on the root logger at WARNING, where no level can single it out."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Please consider")


def configure(verbose: bool) -> None:
    """Set up this process (and the children it starts, through the environment) before any library
    import: quiet by default, everything with ``--verbose``."""
    global _verbose
    _verbose = verbose
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO and WARNING lines
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger().addFilter(_QuantiserAdvice())


def verbose() -> bool:
    return _verbose


def quiet_onnxruntime() -> None:
    """onnxruntime's C++ warnings (CleanUnusedInitializersAndNodeArgs ...) in this process, unless verbose."""
    if not _verbose:
        import onnxruntime as ort

        ort.set_default_logger_severity(3)  # errors only


def is_noise(line: str) -> bool:
    return not _verbose and LIBRARY_NOISE.match(line) is not None


def pass_through(source: IO[bytes], target: IO[str]) -> None:
    """Copy a child's stderr to ``target`` line by line, leaving out the libraries' noise."""
    for raw in iter(source.readline, b""):
        line = raw.decode("utf-8", "replace")
        if not is_noise(line):
            target.write(line)
            target.flush()


@contextlib.contextmanager
def _pumped(copy: Any, source: IO[bytes] | None, target: IO[str]) -> Iterator[None]:
    """``copy(source, target)`` in a thread while the block runs (the child's lifetime), then drained."""
    if source is None:
        yield
        return
    pump = threading.Thread(target=copy, args=(source, target), daemon=True)
    pump.start()
    try:
        yield
    finally:
        pump.join(timeout=10)


def filtered(source: IO[bytes] | None, target: IO[str] | None = None) -> contextlib.AbstractContextManager[None]:
    """A child's stderr through ``pass_through``."""
    return _pumped(pass_through, source, target or sys.stderr)


def job_output(source: IO[bytes] | None, target: IO[str] | None = None) -> contextlib.AbstractContextManager[None]:
    """A training job's stdout through ``condense_epochs``."""
    return _pumped(condense_epochs, source, target or sys.stdout)


EPOCH = re.compile(r"^epoch=(\d+) of=(\d+)\b")
EPOCH_LINES = 5  # at most this many epoch lines (the first, the last, evenly between), unless verbose


def condense_epochs(source: IO[bytes], target: IO[str]) -> None:
    """Copy a job's stdout, its ``epoch=N of=M ...`` lines thinned to EPOCH_LINES; on a terminal the
    epochs left out show as a progress bar instead."""
    bar = Progress("epochs", target)
    for raw in iter(source.readline, b""):
        line = raw.decode("utf-8", "replace")
        epoch = EPOCH.match(line)
        if epoch and not _verbose:
            done, total = int(epoch.group(1)), int(epoch.group(2))
            step = max(1, -(-total // (EPOCH_LINES - 1)))
            if done not in (1, total) and done % step:
                bar.update(done, total, line.split(" ", 2)[-1].strip())
                continue
        bar.clear()
        target.write(line)
        target.flush()
    bar.clear()


class Refused(Exception):
    """Something the user must fix before the command can run: said in one line (with what to do) by
    ``maas.cli.main``, exit code 2."""


def table(rows: list[dict[str, Any]], columns: list[str], out: IO[str] | None = None) -> None:
    """Rows under their column names, left-aligned, as ``kubectl get`` prints them (no box drawing:
    the same text on a terminal, in a pipe and in a README)."""
    out = out or sys.stdout
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    for line in [[c.upper() for c in columns], *cells]:
        out.write("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() + "\n")


class Progress:
    """A one-line progress bar (rich) on a terminal, gone when cleared; nothing in CI logs and pipes,
    which get the plain lines instead."""

    def __init__(self, what: str, target: IO[str]) -> None:
        self.what, self.target = what, target
        self.shown = target.isatty()
        self._bar: Any = None
        self._task: Any = None

    def update(self, done: float, total: float | None, note: str = "") -> None:
        if not self.shown:
            return
        if self._bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[note]}"),
                TimeRemainingColumn(),
                console=Console(file=self.target, force_terminal=True),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.what, total=total, note="")
        self._bar.update(self._task, completed=done, total=total, note=note)

    def clear(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
