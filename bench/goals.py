"""The goals a run is held to, met or not, and what holds a missed one back, from the run's own figures."""

from __future__ import annotations

from typing import Any

from bench.stats import MIB, as_stat, figure, lookup, top


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = [
        _cold_goal(results),
        _cold_ratio_goal(results),
        _rss_goal(results),
        _size_goal(results),
        _latency_goal(results),
        _batch_goal(results),
        _batch_rss_goal(results),
        _load_goal(results),
    ]
    return [g for g in out if g is not None]


def _goal(goal: str, target: str, measured: str, met: bool, why: str = "") -> dict[str, Any]:
    return {"goal": goal, "target": target, "measured": measured, "met": met, "holds_it_back": "" if met else why}


def _cold_goal(r: dict[str, Any]) -> dict[str, Any] | None:
    cold = figure(r, "cold_start", "ours_int8", "cold_s")
    if cold is None:
        return None
    floor = figure(r, "cold_start", "empty", "cold_s")
    init = figure(r, "cold_start", "ours_int8", "init_ms")
    health = lookup(r, "lazy_vs_eager", "health_cold_s")
    imported = lookup(r, "imports", "packages_ms", "import")
    first = figure(r, "imports", "first_request_ms")
    load = figure(r, "imports", "model_load_ms")
    why = []
    if floor:
        why.append(
            f"an empty Python handler alone takes {floor.median:.3f} s here (emulator, interpreter, awslambdaric)"
        )
    if init:
        why.append(f"INIT (interpreter + handler import) {init.median:.0f} ms")
    if imported:
        why.append(f"import by package: {top(imported, 4, '{:.0f} ms', 'median')}")
    if first:
        extra = f", of which model download + session {load.median:.0f} ms" if load else ""
        why.append(f"first request {first.median:.0f} ms{extra}")
    if health:
        lazy, eager = as_stat(health["lazy"]), as_stat(health["eager"])
        if lazy and eager:
            why.append(
                f"GET /health, which needs no model, {lazy.median:.3f} s (with the deferred work done at INIT: "
                f"{eager.median:.3f} s)"
            )
    return _goal(
        "cold start, int8 handler", "≤ 0.30 s", f"{cold.spread('{:.3f}')} s", cold.median <= 0.30, "; ".join(why)
    )


def _cold_ratio_goal(r: dict[str, Any]) -> dict[str, Any] | None:
    ours = figure(r, "cold_start", "ours_int8", "cold_s")
    theirs = figure(r, "cold_start", "tensorflow", "cold_s")
    if ours is None or theirs is None:
        return None
    share = ours.median / theirs.median
    floor = figure(r, "cold_start", "empty", "cold_s")
    why = f"TensorFlow's cold start is {theirs.median:.2f} s here; ours would need ≤ {theirs.median / 15:.3f} s"
    if floor and floor.median > theirs.median / 15:
        why += f", below the {floor.median:.3f} s every Python handler pays here"
    elif floor:
        why += f" (an empty Python handler takes {floor.median:.3f} s); see the cold start goal for where ours goes"
    return _goal(
        "cold start vs TensorFlow handler",
        "≤ 1/15",
        f"1/{1 / share:.1f} ({ours.median:.3f} vs {theirs.median:.2f} s)",
        share <= 1 / 15,
        why,
    )


def _rss_goal(r: dict[str, Any]) -> dict[str, Any] | None:
    rss = figure(r, "cold_start", "ours_int8", "peak_rss_mib")
    if rss is None:
        return None
    floor = figure(r, "cold_start", "empty", "peak_rss_mib")
    after_import = figure(r, "imports", "peak_rss_after_import_mib")
    health = figure(r, "cold_start", "health", "peak_rss_mib")
    why = []
    if floor:
        why.append(f"empty handler {floor.median:.0f} MiB")
    if after_import:
        why.append(f"after the handler's import {after_import.median:.0f} MiB")
    if health:
        why.append(f"GET /health {health.median:.0f} MiB")
    return _goal(
        "peak RSS of a cold request", "≤ 120 MiB", f"{rss.spread('{:.0f}')} MiB", rss.median <= 120, "; ".join(why)
    )


def _size_goal(r: dict[str, Any]) -> dict[str, Any] | None:
    unzipped = lookup(r, "size", "sam_build", "unzipped_bytes")
    if unzipped is None:
        return None
    largest = lookup(r, "size", "sam_build", "largest") or {}
    why = [f"largest entries: {', '.join(f'{k} {v / MIB:.1f} MiB' for k, v in list(largest.items())[:5])}"]
    return _goal(
        "sam build package, unzipped",
        "≤ 100 MB (MiB, as Lambda counts)",
        f"{unzipped / MIB:.1f} MiB",
        unzipped <= 100 * MIB,
        "; ".join(why),
    )


def _latency_goal(r: dict[str, Any]) -> dict[str, Any] | None:
    row = lookup(r, "latency", "int8 x1")
    handler, bare = figure(row, "handler", "p50_ms"), figure(row, "bare", "p50_ms")
    if handler is None or bare is None:
        return None
    times = handler.median / bare.median
    profile = lookup(row, "handler_profile", "by_package_pct")
    why = f"the handler's own time by package (cProfile): {top(profile, 5, '{:.0f}%', None)}" if profile else ""
    return _goal(
        "warm handler p50 vs bare session.run, 1 instance",
        "≤ 1.5x",
        f"{times:.2f}x ({handler.median:.3f} vs {bare.median:.3f} ms)",
        times <= 1.5,
        why,
    )


def _batch_goal(r: dict[str, Any]) -> dict[str, Any] | None:
    ours = figure(r, "batch", "rows_per_s")
    best = figure(r, "batch", "bare", "best_rows_per_s")
    if ours is None or best is None:
        return None
    share = ours.median / best.median
    phases = lookup(r, "batch", "phases_s") or {}
    wall = figure(r, "batch", "wall_s")
    why = ""
    if phases and wall:
        ranked = sorted(phases.items(), key=lambda item: -item[1]["median"])
        why = "time by phase: " + ", ".join(f"{k} {100 * v['median'] / wall.median:.0f}%" for k, v in ranked)
    size = lookup(r, "batch", "bare", "best_batch_size")
    inside = figure(r, "batch", "session_run_rows_per_s")
    chunk = str(lookup(r, "batch", "input", "chunk_rows"))
    at_chunk = as_stat((lookup(r, "batch", "bare", "rows_per_s") or {}).get(chunk))
    if inside and at_chunk:
        why += (
            f"; inside BatchFunction, session.run alone scores {inside.median:,.0f} rows/s on its chunks of {chunk} "
            f"(bare at {chunk}: {at_chunk.median:,.0f})"
        )
    return _goal(
        "batch rows/s vs bare session.run at its best batch size",
        "≥ 0.8x",
        f"{share:.2f}x ({ours.median:,.0f} vs {best.median:,.0f} rows/s at batch {size})",
        share >= 0.8,
        why,
    )


def _batch_rss_goal(r: dict[str, Any]) -> dict[str, Any] | None:
    rss = figure(r, "batch", "peak_rss_mib")
    if rss is None:
        return None
    size = lookup(r, "batch", "input", "bytes") or 0
    return _goal(
        f"batch peak RSS on a {size / MIB:.0f} MiB file (streamed)",
        "≤ 300 MiB",
        f"{rss.spread('{:.0f}')} MiB",
        rss.median <= 300,
    )


def _load_goal(r: dict[str, Any]) -> dict[str, Any] | None:
    total = lookup(r, "load_test", "total")
    if not total:
        return None
    users, seconds = lookup(r, "load_test", "users"), lookup(r, "load_test", "seconds")
    errors = lookup(r, "load_test", "errors") or []
    why = [
        f"{e['occurrences']} x {e['name']} {e['error']!r}, {e['first_s']:.1f}-{e['last_s']:.1f} s after the start"
        for e in errors
    ]
    why.append(f"slowest response {total['max_ms']:,.0f} ms, p99 {total['p99_ms']:,.0f} ms")
    return _goal(
        f"load test, {users} clients for {seconds} s, two models",
        "0 errors",
        f"{total['failures']} errors in {total['requests']:,} requests",
        total["failures"] == 0,
        "; ".join(why),
    )
