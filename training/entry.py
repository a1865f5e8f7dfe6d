"""SageMaker script-mode program: ``maas train submit`` puts a copy of this file at the top of the
source directory as ``entry.py`` (the ``sagemaker_program``), beside ``training/`` and ``maas_core/shared/``.

The toolkit runs ``python entry.py --epochs 10 --model_name digits ...`` from ``/opt/ml/code``:
every hyperparameter once more as an argument, in the toolkit's spelling (``--batch_size``). The job
reads the same values from ``hyperparameters.json``, JSON-decoded, so the arguments are dropped
here rather than parsed a second time. ``python -m training.entry`` does the same from a checkout.

Only the standard library is imported before the job, and the job's own import is guarded: whatever
stops it from starting (a module the image's Python lacks, a missing package) still writes
``/opt/ml/output/failure``, the reason SageMaker reports, instead of a bare ExecuteUserScriptError.
"""

from __future__ import annotations

import os
import platform
import sys
import traceback

# SageMaker keeps the first 1024 characters of the failure file as the job's FailureReason.
FAILURE_REASON_CHARS = 1024


def failure_file() -> str:
    """Where training.job.main writes its failures too: ``<SM_ROOT or /opt/ml>/output/failure``."""
    return os.path.join(os.environ.get("SM_ROOT") or "/opt/ml", "output", "failure")


def fail_to_start(exc: BaseException) -> int:
    """Write the failure file for an error before the job's own handler exists; exit status 1."""
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    # Type and message first: they are what the 1024 characters must hold.
    reason = f"{type(exc).__name__}: {exc} (while importing the job, Python {platform.python_version()})"
    path = failure_file()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        out.write(reason[:FAILURE_REASON_CHARS] + "\n")
    print(f"training failed: {reason[:FAILURE_REASON_CHARS]}", file=sys.stderr, flush=True)
    return 1


def run() -> int:
    try:
        from training.job import main
    except Exception as exc:  # ImportError, SyntaxError, a failing module-level line: all are the job's failure
        return fail_to_start(exc)
    return main([])


if __name__ == "__main__":
    sys.exit(run())
