"""results.png: our handler against the TensorFlow handler, one panel per figure, medians with min-max bars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.stats import MIB, lookup

OURS, FP32, THEIRS, FLOOR = "#2b7bba", "#7fb2dd", "#d9642c", "#9a9a9a"


def _bars(
    ax: Any, title: str, unit: str, bars: list[tuple[str, dict[str, Any] | float | None, str]], log: bool = False
) -> None:
    labels, heights, low, high, colours = [], [], [], [], []
    for label, value, colour in bars:
        if value is None:
            continue
        if isinstance(value, dict):
            median, lo, hi = value["median"], value["min"], value["max"]
        else:
            median = lo = hi = float(value)
        labels.append(label)
        heights.append(median)
        low.append(median - lo)
        high.append(hi - median)
        colours.append(colour)
    if not heights:
        ax.set_visible(False)
        return
    positions = range(len(heights))
    ax.bar(positions, heights, color=colours, yerr=[low, high], capsize=3)
    ax.set_xticks(list(positions), labels, fontsize=8)
    ax.set_title(f"{title} ({unit})", fontsize=10)
    if log:
        ax.set_yscale("log")
    for x, h in zip(positions, heights, strict=True):
        ax.annotate(
            f"{h:,.0f}" if h >= 100 else f"{h:.3g}",
            (x, h),
            ha="center",
            va="bottom",
            fontsize=7,
            xytext=(0, 2),
            textcoords="offset points",
        )
    ax.grid(axis="y", alpha=0.3)


def draw(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cold = results.get("cold_start") or {}
    lat = results.get("latency") or {}
    size = results.get("size") or {}
    batch = results.get("batch") or {}

    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    for ax, key, title, unit in (
        (axes[0][0], "cold_s", "cold start, spawn to first 200", "s"),
        (axes[0][1], "peak_rss_mib", "peak RSS of the cold process", "MiB"),
    ):
        variants = [
            ("empty\nhandler", "empty", FLOOR),
            ("ours\nint8", "ours_int8", OURS),
            ("ours\nfp32", "ours_fp32", FP32),
        ]
        if key == "cold_s":  # the eager wrapper's RSS: results.md's cold start table
            variants.append(("ours int8\neager", "ours_int8_eager", FP32))
        variants.append(("TensorFlow", "tensorflow", THEIRS))
        _bars(ax, title, unit, [(label, lookup(cold, name, key), colour) for label, name, colour in variants])
    _bars(
        axes[0][2],
        "deployment size, unzipped",
        "MiB, log scale",
        [
            ("sam build", (lookup(size, "sam_build", "unzipped_bytes") or 0) / MIB or None, OURS),
            ("TensorFlow\ninstall", (lookup(size, "tensorflow", "unzipped_bytes") or 0) / MIB or None, THEIRS),
        ],
        log=True,
    )
    for ax, n in ((axes[1][0], 1), (axes[1][1], 32)):
        _bars(
            ax,
            f"warm p50, {n} instance{'s' if n > 1 else ''}",
            "ms",
            [
                ("bare\nint8", lookup(lat, f"int8 x{n}", "bare", "p50_ms"), FLOOR),
                ("handler\nint8", lookup(lat, f"int8 x{n}", "handler", "p50_ms"), OURS),
                ("bare\nfp32", lookup(lat, f"fp32 x{n}", "bare", "p50_ms"), FLOOR),
                ("handler\nfp32", lookup(lat, f"fp32 x{n}", "handler", "p50_ms"), FP32),
                ("bare\nTF", lookup(lat, f"tensorflow x{n}", "bare", "p50_ms"), FLOOR),
                ("handler\nTF", lookup(lat, f"tensorflow x{n}", "handler", "p50_ms"), THEIRS),
            ],
        )
    best = lookup(batch, "bare", "best_rows_per_s")
    _bars(
        axes[1][2],
        "batch scoring throughput",
        "rows/s",
        [
            ("BatchFunction\nJSON Lines", lookup(batch, "rows_per_s"), OURS),
            (f"bare session.run\nbatch {lookup(batch, 'bare', 'best_batch_size')}", best, FLOOR),
        ],
    )
    machine = results.get("machine", {})
    fig.suptitle(
        f"MaaS (ONNX Runtime) vs TensorFlow handler — {machine.get('cpu')}, {machine.get('cores')} cores, "
        f"{results.get('started_at')}; medians, bars = min-max",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
