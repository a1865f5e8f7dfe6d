"""The arithmetic every benchmark figure goes through, and the tables it is rendered in.

Children on the Lambda runtime's Python import this too, so it needs nothing beyond the standard
library: a figure is the median of repeated runs with their min and max (``Stat``), latency percentiles
are taken the way numpy's default (linear) does, and the report's tables are GitHub Markdown.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

MIB = 2**20  # sizes in MiB: Lambda's limits count so (its 250 MB unzipped is 262,144,000 bytes)


@dataclass(frozen=True)
class Stat:
    """One figure: the median of ``n`` repeated runs, with the smallest and largest run (and every run)."""

    median: float
    min: float
    max: float
    n: int
    runs: tuple[float, ...] = ()

    @classmethod
    def of(cls, values: Iterable[float]) -> Stat:
        runs = tuple(float(v) for v in values)
        if not runs:
            raise ValueError("a figure needs at least one run")
        return cls(statistics.median(runs), min(runs), max(runs), len(runs), runs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stat:
        runs = tuple(float(v) for v in data.get("runs", ()))
        return cls(float(data["median"]), float(data["min"]), float(data["max"]), int(data["n"]), runs)

    def to_dict(self, digits: int = 4) -> dict[str, Any]:
        return {
            "median": round(self.median, digits),
            "min": round(self.min, digits),
            "max": round(self.max, digits),
            "n": self.n,
            "runs": [round(v, digits) for v in self.runs],
        }

    def spread(self, fmt: str = "{:.3g}") -> str:
        """``median (min-max)``, or the one value when every run gave it."""
        if self.n == 1 or self.min == self.max:
            return fmt.format(self.median)
        return f"{fmt.format(self.median)} ({fmt.format(self.min)}-{fmt.format(self.max)})"


def is_stat(value: Any) -> bool:
    """A ``Stat.to_dict()`` that carries its runs (so it can take in the runs of another round)."""
    return isinstance(value, dict) and {"median", "min", "max", "n", "runs"} <= value.keys()


def merge(first: Any, later: Any) -> Any:
    """Two rounds of one run's measurement as one: each figure's runs pooled (its median, min and max
    taken again), lists of runs joined, dicts merged key by key; any other value is the first round's."""
    if is_stat(first) and is_stat(later):
        digits = max((_decimals(v) for v in (*first["runs"], *later["runs"])), default=4)
        # One digit more than the runs carry: the median of an even count lies halfway between two of them.
        return Stat.of([*first["runs"], *later["runs"]]).to_dict(digits + 1)
    if isinstance(first, dict) and isinstance(later, dict):
        out = dict(first)
        for key, value in later.items():
            out[key] = merge(first[key], value) if key in first else value
        return out
    if isinstance(first, list) and isinstance(later, list):
        return first + later
    return first


def summary(tree: Any) -> Any:
    """What bench/results.json keeps of a run: every figure as its median, min, max and count, without
    the runs it was taken from (those, and every cold start's own record, stay in the ignored
    bench/out/runs.json); whatever is not a figure as it is."""
    if isinstance(tree, dict):
        if is_stat(tree):
            return {key: tree[key] for key in ("median", "min", "max", "n")}
        return {key: summary(value) for key, value in tree.items() if not (key == "runs" and isinstance(value, list))}
    if isinstance(tree, list):
        return [summary(value) for value in tree]
    return tree


def figures(tree: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Stat]]:
    """Every figure in a results tree, with its path (``cold_start/ours_int8/cold_s``)."""
    if isinstance(tree, dict) and {"median", "min", "max", "n"} <= tree.keys():
        yield "/".join(path), Stat.from_dict(tree)
    elif isinstance(tree, dict):
        for key, value in tree.items():
            yield from figures(value, (*path, str(key)))


def compare(previous: dict[str, Any], current: dict[str, Any], digits: int = 4) -> dict[str, Any]:
    """Which of this run's medians fall outside the previous run's min-max, figure by figure, the
    three taken to ``digits`` significant digits (the report shows 3 or 4).

    Figures of one run (n = 1) are left out: a single run has no spread to fall within."""
    before = {name: stat for name, stat in figures(previous) if stat.n > 1}
    outside: list[dict[str, Any]] = []
    checked = 0
    for name, stat in figures(current):
        old = before.get(name)
        if old is None:
            continue
        checked += 1
        if not _significant(old.min, digits) <= _significant(stat.median, digits) <= _significant(old.max, digits):
            edge = old.min if stat.median < old.min else old.max
            off = 100 * (stat.median - edge) / edge if edge else float("inf")
            outside.append({"figure": name, "median": stat.median, "min": old.min, "max": old.max, "off_pct": off})
    outside.sort(key=lambda item: -abs(float(item["off_pct"])))
    return {"checked": checked, "inside": checked - len(outside), "outside": outside}


def _significant(value: float, digits: int) -> float:
    return float(f"{value:.{digits}g}")


def _decimals(value: float) -> int:
    text = repr(float(value))
    return 0 if "e" in text else len(text.split(".")[1].rstrip("0"))


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


def lookup(results: dict[str, Any], *path: str) -> Any:
    """``results[path[0]][path[1]]...``, or None where a step is missing (a section that was not measured)."""
    value: Any = results
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def as_stat(value: Any) -> Stat | None:
    """The figure ``value`` holds (a ``Stat.to_dict()``, runs or not), or None where it holds none."""
    return Stat.from_dict(value) if isinstance(value, dict) and "median" in value else None


def figure(results: dict[str, Any], *path: str) -> Stat | None:
    """The figure at ``path``, or None where it was not measured."""
    return as_stat(lookup(results, *path))


def spread_of(value: Any, fmt: str = "{:.3g}", scale: float = 1.0) -> str | None:
    """``Stat.spread`` of the figure ``value`` holds, each number times ``scale``; None where it holds none."""
    stat = as_stat(value)
    if stat is None:
        return None
    return Stat(stat.median * scale, stat.min * scale, stat.max * scale, stat.n).spread(fmt)


def top(mapping: dict[str, Any] | None, count: int, fmt: str, key: str | None = None) -> str:
    """The first ``count`` entries as ``name value, ...`` (each value's ``key`` where given)."""
    if not mapping:
        return "-"
    items = list(mapping.items())[:count]
    return ", ".join(f"{name} {fmt.format(value[key] if key else value)}" for name, value in items)
