"""Import-time work: what the handler's import and its first request each spend importing, per package.

``python -X importtime`` prints every module's own import time; the child prints a marker between
the handler's import and its first request, so each module lands on one side. Summed by top-level
package, the import side is what every cold start pays before the handler runs (Lambda's INIT), and
the first-request side is what was deferred to the request that needs it. ``deferred`` times each
piece of work the handler defers, done eagerly at import (bench/eager_handler) and lazily after it.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.child import MARK
from bench.common import ROOT, Runtime, child
from bench.stats import Stat

HARNESS = {"bench", "maas"}  # the measuring child's own packages, imported before the handler: not the function's
LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def by_package(stderr: str) -> dict[str, dict[str, float]]:
    """{"import": {package: ms}, "first_request": {package: ms}} from ``-X importtime`` output."""
    side = "import"
    totals: dict[str, dict[str, float]] = {"import": defaultdict(float), "first_request": defaultdict(float)}
    for line in stderr.splitlines():
        if line.startswith(MARK):
            side = "first_request"
            continue
        found = LINE.match(line)
        if found and found.group(4).split(".")[0] not in HARNESS:
            totals[side][found.group(4).split(".")[0]] += int(found.group(1)) / 1000
    return {k: dict(v) for k, v in totals.items()}


def measure(
    runtime: Runtime, module: str, event: dict[str, Any], env: dict[str, str], work: Path, repeats: int, round_no: int
) -> dict[str, Any]:
    event_path = work / "first-request-event.json"
    event_path.write_text(json.dumps(event))
    runs = []
    for i in range(repeats):
        out = work / f"first-request-{round_no}-{i}.json"
        process = subprocess.run(
            [
                *runtime.python,
                "-X",
                "importtime",
                "-m",
                "bench.child",
                "first-request",
                module,
                str(event_path),
                str(out),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if process.returncode != 0:
            raise RuntimeError(f"first-request child failed: {process.stderr[-2000:]}")
        runs.append({**json.loads(out.read_text()), "packages": by_package(process.stderr)})
    packages: dict[str, dict[str, Any]] = {}
    for side in ("import", "first_request"):
        names = {n for r in runs for n in r["packages"][side]}
        packages[side] = {n: Stat.of(r["packages"][side].get(n, 0.0) for r in runs).to_dict(2) for n in names}
    return {
        "module": module,
        "import_ms": Stat.of(r["import_ms"] for r in runs).to_dict(1),
        "first_request_ms": Stat.of(r["first_request_ms"] for r in runs).to_dict(1),
        "model_load_ms": Stat.of(r["model_load_ms"][0] for r in runs).to_dict(1)
        if all(r["model_load_ms"] for r in runs)
        else None,
        "peak_rss_after_import_mib": Stat.of(r["peak_rss_after_import_mib"] for r in runs).to_dict(1),
        "peak_rss_after_first_request_mib": Stat.of(r["peak_rss_mib"] for r in runs).to_dict(1),
        "packages_ms": packages,
        **(
            {"eager_ms": {k: Stat.of(r["eager_ms"][k] for r in runs).to_dict(1) for k in runs[0]["eager_ms"]}}
            if all(r.get("eager_ms") for r in runs)
            else {}
        ),
        "note": "per-package sums of -X importtime self times (importtime itself adds overhead)",
    }


SMALLEST_MS = 1.0  # packages below it are noise next to a cold start, and too small to time apart


def finish(summary: dict[str, Any]) -> dict[str, Any]:
    """After the last round: packages of at least SMALLEST_MS ranked by their median, the costliest first."""
    for side, table in summary.get("packages_ms", {}).items():
        ranked = sorted(table.items(), key=lambda item: -item[1]["median"])
        summary["packages_ms"][side] = {name: stat for name, stat in ranked if stat["median"] >= SMALLEST_MS}
    summary["note"] += f"; packages under {SMALLEST_MS:g} ms left out"
    return summary


def deferred(runtime: Runtime, env: dict[str, str], work: Path, repeats: int) -> dict[str, dict[str, Any]]:
    """{"eager": {step: ms}, "lazy": {step: ms}}: each deferred step, at the eager wrapper's import and
    right after the handler's import (what the first prediction pays), in fresh processes taken in turn.
    ``env`` must put bench/eager_handler first on the path."""
    runs: dict[str, list[dict[str, float]]] = {"eager": [], "lazy": []}
    for _ in range(repeats):
        for mode, out in runs.items():
            out.append(child(runtime, ["items", mode], env, work / f"items-{mode}.log")["ms"])
    return {mode: {k: Stat.of(r[k] for r in out).to_dict(1) for k in out[0]} for mode, out in runs.items()}
