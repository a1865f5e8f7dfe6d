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
def filtered(source: IO[bytes] | None, target: IO[str] | None = None) -> Iterator[None]:
    """``pass_through`` in a thread while the block runs (the child's lifetime), then drained."""
    if source is None:
        yield
        return
    pump = threading.Thread(target=pass_through, args=(source, target or sys.stderr), daemon=True)
    pump.start()
    try:
        yield
    finally:
        pump.join(timeout=10)


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
