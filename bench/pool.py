"""Runs of ``make bench`` of the same code, on the same machine and settings, pooled into one set of figures.

One run lasts about ten minutes, and its spread shows how the machine varies within those minutes. This
2-core VM's speed also drifts by several percent over hours (its host's other tenants): a fixed
pure-Python workload took 18.2 to 20.4 ms over one evening, and a run at another hour lands its medians
off by as much, outside any one run's min-max. Only runs taken at different times can show that spread,
so a run of the same code, machine and settings as the results.json it replaces adds its runs to it:
each figure becomes the median, min and max of every run of every such ``make bench``. The rerun check is
made first, this run's own medians against the earlier runs' spread. Any change to a tracked file
(results and README aside), to the machine, to the package versions or to the settings starts the
figures over, as does ``--fresh``.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

from maas.bench import merge

# The measured sections whose figures pool; the rest (sizes, models, load test, timings) are the latest run's.
POOLED = (
    "machine_speed",
    "page_cache",
    "cold_start",
    "imports",
    "imports_eager",
    "lazy_vs_eager",
    "latency",
    "batch",
    "compression",
)
# What must match in results["machine"] (the load average need not).
MACHINE = (
    "cpu",
    "cores",
    "memory_gib",
    "os",
    "machine",
    "python",
    "onnxruntime",
    "tensorflow",
    "keras",
    "numpy",
    "function_runtime",
)
# Tracked files a run rewrites, which do not change what it measures.
WRITTEN = frozenset({"README.md", "bench/results.json", "bench/results.md", "bench/results.png"})


def fingerprint(root: Path) -> str | None:
    """``sha256:<hex>`` (a digest, written the way OCI writes one) of every tracked file's path and content
    as it is on disk (uncommitted edits count), the files a run writes aside; None outside a git
    checkout, where nothing pools."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True, timeout=30
        ).stdout.decode()
    except (OSError, subprocess.SubprocessError):
        return None
    digest = hashlib.sha256()
    for name in sorted(n for n in listed.split("\0") if n and n not in WRITTEN):
        path = root / name
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"(missing)")
        digest.update(b"\0")
    return f"sha256:{digest.hexdigest()}"


def why_not(previous: dict[str, Any], current: dict[str, Any], comparable: tuple[str, ...]) -> str | None:
    """Why the two runs' figures must not pool, or None when they may."""
    if not current.get("fingerprint") or previous.get("fingerprint") != current.get("fingerprint"):
        return "the code differs from the earlier run's (or is not a git checkout)"
    was, now = previous.get("machine") or {}, current.get("machine") or {}
    differ = [k for k in MACHINE if was.get(k) != now.get(k)]
    if differ:
        return f"the machine differs ({', '.join(differ)})"
    was, now = previous.get("settings") or {}, current.get("settings") or {}
    differ = [k for k in comparable if was.get(k) != now.get(k)]
    if differ:
        return f"the settings differ ({', '.join(differ)})"
    if previous.get("failed_sections") or current.get("failed_sections"):
        return "a part of one of the runs failed"
    return None


def invocation(results: dict[str, Any]) -> dict[str, Any]:
    """One run of ``make bench``, as the pooled results list it."""
    check = results.get("rerun_check") or {}
    load = (results.get("load_test") or {}).get("total") or {}
    speed = (results.get("machine_speed") or {}).get("python_loop_ms") or {}
    return {
        "started_at": results.get("started_at"),
        "wall_s": results.get("wall_s"),
        "python_loop_ms": speed.get("median"),
        "load_average_at_start": (results.get("machine") or {}).get("load_average_at_start"),
        "load_test": {"requests": load.get("requests"), "failures": load.get("failures")} if load else None,
        "rerun_check": (
            {"inside": check["inside"], "checked": check["checked"], "headline": check["headline"]}
            if "checked" in check
            else check.get("skipped")
        ),
    }


def pool(previous: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """``current`` with the runs of ``previous`` (one or more earlier runs) added to every pooled figure,
    earliest first; what only describes a run (when, how long, the load test) stays the current run's."""
    out = dict(current)
    for name in POOLED:
        if name in previous and name in current:
            out[name] = merge(previous[name], current[name])
    out["invocations"] = [*(previous.get("invocations") or []), *current["invocations"]]
    return out
