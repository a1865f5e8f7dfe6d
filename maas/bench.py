"""`maas bench`: the benchmark harness in bench/, and the arithmetic its figures share.

The harness measures in child processes (bench/), so it runs as ``python -m bench`` from the project
root; ``main`` starts it there. What is here has no dependency beyond the standard library: a figure
is the median of repeated runs with their min and max (``Stat``), latency percentiles are taken the
way numpy's default (linear) does, and the report's tables are rendered as GitHub Markdown.
"""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from maas.paths import project_root


@dataclass(frozen=True)
class Stat:
    """One figure: the median of ``n`` repeated runs, with the smallest and largest run."""

    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Stat:
        runs = [float(v) for v in values]
        if not runs:
            raise ValueError("a figure needs at least one run")
        return cls(statistics.median(runs), min(runs), max(runs), len(runs))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stat:
        return cls(float(data["median"]), float(data["min"]), float(data["max"]), int(data["n"]))

    def to_dict(self, digits: int = 4) -> dict[str, Any]:
        return {k: (round(v, digits) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def spread(self, fmt: str = "{:.3g}") -> str:
        """``median (min-max)``, or the one value when every run gave it."""
        if self.n == 1 or self.min == self.max:
            return fmt.format(self.median)
        return f"{fmt.format(self.median)} ({fmt.format(self.min)}-{fmt.format(self.max)})"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str = "") -> str:
    """A GitHub Markdown table; ``align`` has one letter per column (l, r or c), left by default."""
    marks = {"l": "---", "r": "---:", "c": ":---:"}
    cells = [[_cell(v) for v in row] for row in rows]
    for row in cells:
        if len(row) != len(header):
            raise ValueError(f"row has {len(row)} cells, header has {len(header)}: {row}")
    rule = [marks[align[i]] if i < len(align) else "---" for i in range(len(header))]
    lines = [header, rule, *cells]
    return "\n".join("| " + " | ".join(str(c) for c in line) + " |" for line in lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    return str(value).replace("|", "\\|").replace("\n", " ")


def main(argv: list[str] | None = None) -> int:
    """Run the harness (``python -m bench``) from the project root; ``argv`` as ``python -m bench --help`` lists."""
    args = list(sys.argv[1:] if argv is None else argv)
    return subprocess.call([sys.executable, "-m", "bench", *args], cwd=project_root())


def lookup(results: dict[str, Any], *path: str) -> Any:
    """``results[path[0]][path[1]]...``, or None where a step is missing (a section that was not measured)."""
    value: Any = results
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value
