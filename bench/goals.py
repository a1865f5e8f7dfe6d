"""The goals a run is held to, met or not, and what holds a missed one back, from the run's own figures.

The request path's goals are issue 19's: the handler's overhead over its bare ``session.run``, against
TensorFlow's handler, its tail, the served compression candidate against the fastest, onnxruntime's
threads, the cold start and batch scoring; the rest (memory, package size, the load test) stand as before.
"""

from __future__ import annotations

from typing import Any

from bench.stats import MIB, Stat, as_stat, figure, lookup, top

INSTANCES = (1, 32)  # the warm latency table's rows: one instance per request, and 32


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = [
        _cold_goal(results),
        _cold_ratio_goal(results),
        _rss_goal(results),
        _size_goal(results),
        *(_overhead_goal(results, n, limit) for n, limit in zip(INSTANCES, (0.10, 0.5), strict=True)),
        *(_versus_tensorflow_goal(results, n) for n in INSTANCES),
        *(_tail_goal(results, n) for n in INSTANCES),
        *(_served_candidate_goal(results, batch) for batch in (1, 32)),
        _bare_threads_goal(results),
        _batch_goal(results),
        _batch_rss_goal(results),
        _load_goal(results),
    ]
    return [g for g in out if g is not None]


def _goal(goal: str, target: str, measured: str, met: bool | None, why: str = "") -> dict[str, Any]:
    """One goal's row; ``met`` None: the figure is not in this run (the row says why, and is not met)."""
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
        "cold start, served model", "≤ 0.30 s", f"{cold.spread('{:.3f}')} s", cold.median <= 0.30, "; ".join(why)
    )


def _cold_ratio_goal(r: dict[str, Any]) -> dict[str, Any] | None:
    ours = figure(r, "cold_start", "ours_int8", "cold_s")
    theirs = figure(r, "cold_start", "tensorflow", "cold_s")
    if ours is None or theirs is None:
        return None
    share = ours.median / theirs.median
    floor = figure(r, "cold_start", "empty", "cold_s")
    why = f"TensorFlow's cold start is {theirs.median:.2f} s here; ours would need ≤ {theirs.median / 8:.3f} s"
    if floor and floor.median > theirs.median / 8:
        why += f", below the {floor.median:.3f} s every Python handler pays here"
    elif floor:
        why += f" (an empty Python handler takes {floor.median:.3f} s); see the cold start goal for where ours goes"
    return _goal(
        "cold start vs TensorFlow handler",
        "≤ 1/8",
        f"1/{1 / share:.1f} ({ours.median:.3f} vs {theirs.median:.2f} s)",
        share <= 1 / 8,
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


def _p50s(r: dict[str, Any], model: str, n: int) -> tuple[Stat | None, Stat | None, Stat | None]:
    """The handler's p50 and p99 and the bare session's p50 of the warm latency row ``<model> x<n>``."""
    row = lookup(r, "latency", f"{model} x{n}")
    return figure(row, "handler", "p50_ms"), figure(row, "handler", "p99_ms"), figure(row, "bare", "p50_ms")


def overhead_split(r: dict[str, Any], label: str) -> str:
    """The handler's p50 over bare, split at its inference core (``bench.child._core``): what reading, checking
    and writing JSON cost, and what the framework around them costs."""
    row = lookup(r, "latency", label)
    handler, core, bare = (figure(row, key, "p50_ms") for key in ("handler", "core", "bare"))
    if handler is None or core is None or bare is None:
        return ""
    return (
        f"{handler.median - bare.median:.3f} ms = {core.median - bare.median:.3f} ms in the inference core "
        f"(JSON parse, tensor checks, predictions, JSON out: core {core.median:.3f} - bare {bare.median:.3f}) + "
        f"{handler.median - core.median:.3f} ms around it (Powertools' resolver and OpenAPI validation, the "
        f"Logger, Tracer and Metrics decorators, alias lookup, request metrics: handler {handler.median:.3f} - core)"
    )


def _profile(r: dict[str, Any], n: int) -> str:
    profile = lookup(r, "latency", f"int8 x{n}", "handler_profile", "by_package_pct")
    return f"the handler's own time by package (cProfile): {top(profile, 5, '{:.0f}%', None)}" if profile else ""


def _overhead_goal(r: dict[str, Any], n: int, limit_ms: float) -> dict[str, Any] | None:
    handler, _, bare = _p50s(r, "int8", n)
    if handler is None or bare is None:
        return None
    added = handler.median - bare.median
    return _goal(
        f"warm handler p50 - bare session.run p50, {n} instance{'s' if n > 1 else ''}",
        f"≤ {limit_ms:.2f} ms",
        f"{added:.3f} ms ({handler.median:.3f} - {bare.median:.3f} ms)",
        added <= limit_ms,
        overhead_split(r, f"int8 x{n}") or _profile(r, n),
    )


def _versus_tensorflow_goal(r: dict[str, Any], n: int) -> dict[str, Any] | None:
    ours, _, bare = _p50s(r, "int8", n)
    theirs, _, their_bare = _p50s(r, "tensorflow", n)
    if ours is None or theirs is None:
        return None
    share = ours.median / theirs.median
    why = overhead_split(r, f"int8 x{n}") or _profile(r, n)
    if bare and their_bare:
        why = (
            f"the handler adds {ours.median - bare.median:.3f} ms to its session.run, TensorFlow's "
            f"{theirs.median - their_bare.median:.3f} ms to its model call; {why}"
        )
    return _goal(
        f"warm handler p50 vs the TensorFlow handler's, {n} instance{'s' if n > 1 else ''}",
        "≤ 0.5x",
        f"{share:.2f}x ({ours.median:.3f} vs {theirs.median:.3f} ms)",
        share <= 0.5,
        why,
    )


def _tail_goal(r: dict[str, Any], n: int) -> dict[str, Any] | None:
    p50, p99, _ = _p50s(r, "int8", n)
    if p50 is None or p99 is None:
        return None
    their_p50, their_p99, _ = _p50s(r, "tensorflow", n)
    why = f"TensorFlow's handler: {their_p99.median / their_p50.median:.1f}x" if their_p99 and their_p50 else ""
    return _goal(
        f"warm handler p99 vs its p50, {n} instance{'s' if n > 1 else ''}",
        "≤ 2x",
        f"{p99.median / p50.median:.2f}x ({p99.median:.3f} vs {p50.median:.3f} ms)",
        p99.median <= 2 * p50.median,
        why,
    )


def _served_candidate_goal(r: dict[str, Any], batch: int) -> dict[str, Any] | None:
    """The candidate the job published against the fastest candidate within its accuracy gate, on the
    compression table's one-thread latency (``latency`` at batch 1, ``batch_latency`` at its typical batch)."""
    c = r.get("compression") or {}
    candidates = c.get("candidates") or {}
    served = candidates.get(str(c.get("published_by_the_job")))
    fp32 = candidates.get("fp32")
    if served is None or fp32 is None or fp32.get("accuracy") is None:
        return None
    key = "latency" if batch == 1 else "batch_latency"
    goal = f"the job's published candidate ({served['method']}) bare p50 vs the fastest within the gate, batch {batch}"
    allowed = float(c.get("max_accuracy_drop_points") or 0) / 100 + 1e-9
    timed = {
        x["method"]: stat
        for x in candidates.values()
        if x.get("accuracy") is not None and fp32["accuracy"] - x["accuracy"] <= allowed
        if (stat := figure(x, key, "p50_ms")) is not None
    }
    if served["method"] not in timed:
        return _goal(
            goal,
            "≤ 1.1x",
            "not measured in this results.json",
            None,
            f"bench/child.py's compression times {key} from now on",
        )
    fastest = min(timed, key=lambda m: timed[m].median)
    share = timed[served["method"]].median / timed[fastest].median
    return _goal(
        goal,
        "≤ 1.1x",
        f"{share:.2f}x ({timed[served['method']].median:.3f} vs {fastest}'s {timed[fastest].median:.3f} ms)",
        share <= 1.1,
        f"the job's objective: {c.get('objective', 'size')} (published: {served.get('reason')})",
    )


def _bare_threads_goal(r: dict[str, Any]) -> dict[str, Any] | None:
    """The same model's fp32 session against TensorFlow's, 32 instances: onnxruntime's own speed and threads."""
    _, _, ours = _p50s(r, "fp32", 32)
    _, _, theirs = _p50s(r, "tensorflow", 32)
    if ours is None or theirs is None:
        return None
    served = _p50s(r, "int8", 32)[2]
    return _goal(
        "bare onnxruntime (fp32) vs bare TensorFlow, 32 instances",
        "≤ 1x",
        f"{ours.median / theirs.median:.2f}x ({ours.median:.3f} vs {theirs.median:.3f} ms)",
        ours.median <= theirs.median,
        f"the served int8 model's bare session: {served.median:.3f} ms" if served else "",
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
