"""From results.json to words: results.md and README's summary table.

Every number printed here is read from the results of the same run; nothing is typed in.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bench.common import TRACED
from bench.cost import cost_section
from bench.goals import overhead_split
from bench.stats import MIB, as_stat, figure, lookup, markdown_table, ratio, spread_of, top
from maas_core.shared.sizing import MAX_VCPUS, MB_PER_VCPU
from training.compress import NEAR_MARGIN

README_START = "<!-- bench:summary:start -->"
README_END = "<!-- bench:summary:end -->"


def machine_line(r: dict[str, Any]) -> str:
    m = r.get("machine", {})
    return (
        f"{m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB, {m.get('os')}; functions on "
        f"{m.get('function_runtime', '?')}; onnxruntime {m.get('onnxruntime')}, TensorFlow {m.get('tensorflow')}; "
        f"load average {m.get('load_average_at_start')} at start, {m.get('load_average_at_end')} at end{_speed(r)}"
    )


def goals_table(r: dict[str, Any], why: bool = True) -> str:
    header = ["goal", "target", "measured", "met"] + (["what holds it back (measured)"] if why else [])
    rows = [
        [g["goal"], g["target"], g["measured"], g["met"]] + ([g["holds_it_back"] or ""] if why else [])
        for g in r.get("goals", [])
    ]
    return markdown_table(header, rows, "lllc")


def summary_table(r: dict[str, Any]) -> str:
    """The side-by-side table README shows."""
    cold = r.get("cold_start", {})
    rows = []

    def row(name: str, key: str, fmt: str, unit: str, scale: float = 1.0) -> None:
        ours, tf = figure(cold, "ours_int8", key), figure(cold, "tensorflow", key)
        rows.append(
            [
                f"{name} ({unit})",
                spread_of(lookup(cold, "ours_int8", key), fmt, scale),
                spread_of(lookup(cold, "ours_fp32", key), fmt, scale),
                spread_of(lookup(cold, "tensorflow", key), fmt, scale),
                f"{ratio(ours.median, tf.median):.3f}" if ours and tf else None,
            ]
        )

    row("cold start, spawn to first 200", "cold_s", "{:.3f}", "s")
    row("peak RSS of that process", "peak_rss_mib", "{:.0f}", "MiB")
    package = lookup(r, "size", "sam_build")
    tf_install = lookup(r, "size", "tensorflow")
    if package and tf_install:
        for label, key in (("deployment, unzipped", "unzipped_bytes"), ("deployment, zipped", "zipped_bytes")):
            rows.append(
                [
                    f"{label} (MiB)",
                    f"{package[key] / MIB:.1f}",
                    f"{package[key] / MIB:.1f}",
                    f"{tf_install[key] / MIB:,.0f}",
                    f"{package[key] / tf_install[key]:.3f}",
                ]
            )
    lat = r.get("latency", {})
    for n in (1, 32):
        ours, fp32, tf = (lookup(lat, f"{tag} x{n}", "handler", "p50_ms") for tag in ("int8", "fp32", "tensorflow"))
        o, t = as_stat(ours), as_stat(tf)
        rows.append(
            [
                f"warm handler p50, {n} instance{'s' if n > 1 else ''} (ms)",
                spread_of(ours, "{:.3f}"),
                spread_of(fp32, "{:.3f}"),
                spread_of(tf, "{:.3f}"),
                f"{o.median / t.median:.2f}" if o and t else None,
            ]
        )
    header = ["figure", "ours, served ONNX", "ours, fp32 ONNX", "TensorFlow handler", "served / TensorFlow"]
    return markdown_table(header, rows, "lrrrr")


def _cold_table(r: dict[str, Any]) -> str:
    rows = []
    from_disk = lookup(r, "page_cache", "uncached_cold_s") or {}
    for key, v in (r.get("cold_start") or {}).items():
        if not isinstance(v, dict) or "cold_s" not in v:
            continue
        rows.append(
            [
                v["label"],
                spread_of(v.get("cold_s"), "{:.3f}"),
                spread_of(from_disk.get(key), "{:.3f}"),
                spread_of(v.get("init_ms"), "{:.0f}"),
                spread_of(v.get("peak_rss_mib"), "{:.0f}"),
                spread_of(v.get("emulator_rss_mib"), "{:.0f}"),
                spread_of(v.get("warm_invoke_p50_ms"), "{:.2f}"),
                v.get("runtime"),
            ]
        )
    header = [
        "function",
        "cold start (s)",
        "files read from disk (s)",
        "INIT (ms)",
        "peak RSS (MiB)",
        "emulator RSS (MiB)",
        "warm invoke via RIE p50 (ms)",
        "runtime",
    ]
    return markdown_table(header, rows, "lrrrrrrl")


def _size_section(r: dict[str, Any]) -> str:
    size = r.get("size") or {}
    if "sam_build" not in size:
        return f"Skipped: {size.get('skipped') or size.get('error')}\n"
    package, tf = size["sam_build"], size["tensorflow"]
    rows = [
        [
            "`sam build` package (ApiFunction = BatchFunction)",
            package["unzipped_bytes"] / MIB,
            package["zipped_bytes"] / MIB,
        ]
    ]
    rows.append(
        [
            f"TensorFlow install ({tf['distributions']} distributions)",
            tf["unzipped_bytes"] / MIB,
            tf["zipped_bytes"] / MIB,
        ]
    )
    text = markdown_table(
        ["package", "unzipped (MiB)", "zipped (MiB)"], [[a, f"{b:,.1f}", f"{c:,.1f}"] for a, b, c in rows], "lrr"
    )
    text += (
        "\nLargest entries of the package: "
        + ", ".join(f"{k} {v / MIB:.1f} MiB" for k, v in package["largest"].items())
        + ".\n"
    )
    text += (
        "Largest parts of TensorFlow's install: "
        + ", ".join(f"{k} {v / MIB:,.0f} MiB" for k, v in tf["largest"].items())
        + ".\n"
    )
    return text


def _latency_table(r: dict[str, Any]) -> str:
    lat = r.get("latency") or {}
    rows = []
    for label, v in lat.items():
        if not isinstance(v, dict) or "handler" not in v:
            continue
        h50, b50 = as_stat(v["handler"]["p50_ms"]), as_stat(v["bare"]["p50_ms"])
        rows.append(
            [
                label,
                spread_of(v["handler"]["p50_ms"], "{:.3f}"),
                spread_of(v["handler"]["p99_ms"], "{:.3f}"),
                spread_of(v["bare"]["p50_ms"], "{:.3f}"),
                spread_of(v["bare"]["p99_ms"], "{:.3f}"),
                spread_of(lookup(v, "core", "p50_ms"), "{:.3f}"),
                f"{h50.median / b50.median:.2f}x" if h50 and b50 else None,
            ]
        )
    text = markdown_table(
        [
            "handler, instances",
            "handler p50 (ms)",
            "handler p99 (ms)",
            "bare p50 (ms)",
            "bare p99 (ms)",
            "core p50 (ms)",
            "handler / bare p50",
        ],
        rows,
        "lrrrrrr",
    )
    for label in ("int8 x1", "int8 x32"):
        split = overhead_split(r, label)
        if split:
            text += f"\nWhere the handler's time over bare goes, {label}: {split}.\n"
    for label in ("int8 x1", "int8 x32"):
        traced = as_stat(lookup(lat, f"{label} {TRACED}", "handler", "p50_ms"))
        plain = as_stat(lookup(lat, label, "handler", "p50_ms"))
        if traced and plain:
            text += (
                f'\nWith X-Ray tracing on, {label} (the row "{label} {TRACED}": Powertools\' Tracer as the template '
                f"deploys the function, Tracing: Active, with a UDP socket on 127.0.0.1 as X-Ray's daemon): handler "
                f"p50 {traced.median:.3f} ms against {plain.median:.3f} untraced, "
                f"{traced.median - plain.median:+.3f} ms a request. The goals above are taken untraced, as before.\n"
            )
    for label in ("int8 x1", "int8 x32"):
        packages = lookup(lat, label, "handler_profile", "by_package_pct")
        functions = lookup(lat, label, "handler_profile", "by_function_pct")
        if packages and functions:
            text += (
                f"\nOur handler's own time, {label} (cProfile): by package {top(packages, 8, '{:.0f}%', None)}; "
                f"by function {top(functions, 5, '{:.0f}%', None)}.\n"
            )
    return text


def _measured(r: dict[str, Any], section: str, figure_key: str) -> tuple[dict[str, Any], str]:
    """A section of the results and, when the run did not measure it, the line that says why."""
    part = r.get(section) or {}
    if figure_key in part:
        return part, ""
    return part, f"Not measured: {part['error']}\n" if "error" in part else "Not measured in this results.json.\n"


def _batch_section(r: dict[str, Any]) -> str:
    b, missing = _measured(r, "batch", "rows_per_s")
    if missing:
        return missing
    bare = b["bare"]
    rows = [
        [
            f"BatchFunction core ({b['input']['rows']:,} rows, {b['input']['bytes'] / MIB:.0f} MiB, "
            f"chunks of {b['input']['chunk_rows']})",
            spread_of(b["rows_per_s"], "{:,.0f}"),
            spread_of(b["peak_rss_mib"], "{:.0f}"),
        ],
        *[[f"bare session.run, batch {size}", spread_of(v, "{:,.0f}"), None] for size, v in bare["rows_per_s"].items()],
    ]
    text = markdown_table(["scoring", "rows/s", "peak RSS (MiB)"], rows, "lrr")
    wall = as_stat(b["wall_s"])
    if wall:
        text += (
            "\nWhere BatchFunction's time goes: "
            + ", ".join(
                f"{k} {v['median']:.1f} s ({100 * v['median'] / wall.median:.0f}%)"
                for k, v in sorted(b["phases_s"].items(), key=lambda i: -i[1]["median"])
            )
            + f" of {wall.median:.1f} s; {bare['threads']} ONNX Runtime thread(s) on both sides.\n"
        )
    return text


def _compression_table(r: dict[str, Any]) -> str:
    c = r.get("compression") or {}
    batch = c.get("typical_batch_size", 32)
    rows = [
        [
            x["method"],
            f"{x['size_bytes'] / 1000:,.0f}" if x.get("size_bytes") else None,
            f"{x['gzip_bytes'] / 1000:,.0f}" if x.get("gzip_bytes") else None,
            f"{x['accuracy']:.4f}" if x.get("accuracy") is not None else None,
            spread_of(lookup(x, "latency", "p50_ms"), "{:.3f}"),
            spread_of(lookup(x, "batch_latency", "p50_ms"), "{:.3f}"),
            f"{x['latency_ms_at_training']:.3f}" if x.get("latency_ms_at_training") is not None else None,
            f"{x['batch_latency_ms_at_training']:.3f}" if x.get("batch_latency_ms_at_training") is not None else None,
            f"{x['usd_per_million_at_training']:.4g}" if x.get("usd_per_million_at_training") is not None else None,
            bool(x.get("accepted")),
        ]
        for x in (c.get("candidates") or {}).values()
    ]
    header = [
        "candidate",
        "size (kB)",
        "gzipped (kB)",
        "held-out accuracy",
        "p50, batch 1 (ms)",
        f"p50, batch {batch} (ms)",
        "at training, batch 1 (ms)",
        f"at training, batch {batch} (ms)",
        "cost at training ($/M)",
        "published by the job",
    ]
    text = markdown_table(header, rows, "lrrrrrrrrc")
    objective = c.get("objective", "size")
    rule = {
        "size": "the smallest candidate",
        "latency": "the fastest candidate at batch 1",
        "cost": "the cheapest candidate (training/cost.py: Lambda's GB-seconds of its batch-1 and batch-"
        f"{batch} latency at the serving memory, plus its download spread over a container's requests)",
    }.get(objective, objective)
    text += (
        f"\nAccuracy on the job's {c.get('eval_rows')} held-out digits; one ONNX Runtime thread. The job's objective "
        f"is {objective}: it publishes {rule} within {c.get('max_accuracy_drop_points')} points of fp32's accuracy"
        + (
            ""
            if objective == "size"
            else f"; figures within {NEAR_MARGIN:.0%} of the best count as equal, and the smallest file of them wins"
        )
        + ". The job chose by its own figures (at training); the p50 columns are this run's.\n"
    )
    return text


def _ratio_pair(timed: dict[str, Any], model: str, key: str, sizes: list[int]) -> str:
    """``1.44x and 2.26x``: the setting's median ratio at each batch size, in order."""
    found = [as_stat(lookup(timed, f"{model} x{n}", key, "ratio")) for n in sizes]
    return " and ".join(f"{s.median:.2f}x" if s else "-" for s in found)


def _faster(o: dict[str, Any], key: str, sizes: list[int]) -> str:
    """A warning where a setting serving does not use beat the one it is compared with by more than the
    candidates' near-equal margin; empty where it did not."""
    beaten = [
        f"{o['models'][model]} at batch {n}: {s.median:.2f}x"
        for model in o["models"]
        for n in sizes
        if (s := as_stat(lookup(o["timed"], f"{model} x{n}", key, "ratio"))) and s.median < 1 - NEAR_MARGIN
    ]
    label = o["settings"][key]["label"]
    return (
        f" **This run finds {label} faster ({'; '.join(beaten)}): look at serving's choice again.**" if beaten else ""
    )


def _ort_settings_section(r: dict[str, Any]) -> str:
    o, missing = _measured(r, "ort_settings", "timed")
    if missing:
        return missing
    timed, settings = o["timed"], o["settings"]
    sizes = sorted({int(k.rsplit(" x", 1)[1]) for k in timed})
    rows = []
    for model, model_label in o["models"].items():
        for key, s in settings.items():
            cells = []
            for n in sizes:
                at = lookup(timed, f"{model} x{n}", key) or {}
                cells += [spread_of(at.get("p50_ms"), "{:.3f}"), spread_of(at.get("ratio"), "{:.2f}")]
            versus = settings[s["versus"]]["label"] if s.get("versus") else None
            rows.append([s["label"], model_label, *cells, versus])
    header = ["setting", "model"]
    for n in sizes:
        header += [f"p50, batch {n} (ms)", f"÷ compared with, batch {n}"]
    table = markdown_table([*header, "compared with"], rows, "ll" + "rr" * len(sizes) + "l")
    served = (o.get("served_options") or {}).get("served") or {}

    def ratios(key: str) -> str:
        return f"{_ratio_pair(timed, 'served', key, sizes)} (fp32: {_ratio_pair(timed, 'fp32', key, sizes)})"

    batches = "batch " + " and ".join(str(n) for n in sizes)

    method = (
        "A bare `session.run` of each model on the same digits, in one process on the functions' Python "
        "(`bench/child.py ort-settings`): the served rows are `model_cache.build_session`'s own sessions, and each "
        "other row changes one setting of them. Every model and setting of a batch size take turns run by run; a "
        "ratio is each run's p50 over the p50, in the same turn, of the setting it is compared with (the ratios' "
        f"median and min-max). This machine has {(r.get('machine') or {}).get('cores')} cores: the 2-thread rows "
        "need the second one free, and other work on it slows them."
    )
    why = [
        f"**Graph optimisation: {served.get('graph_optimization_level')}** (every fusion, and the CPU's own weight "
        f"layouts), at every MemorySize and batch size: at {batches}, the served candidate's p50 under EXTENDED "
        f"is {ratios('extended')} its p50 under ALL, under BASIC {ratios('basic')}."
        + _faster(o, "extended", sizes)
        + _faster(o, "basic", sizes),
        "**Intra-op threads: one per vCPU** (`model_cache.lambda_vcpus()`), the one setting that changes with "
        f"MemorySize: Lambda gives one vCPU per {MB_PER_VCPU:,} MB (up to {MAX_VCPUS}), so 1 thread up to "
        f"{MB_PER_VCPU:,} MB and 2 from {MB_PER_VCPU + 1:,} MB. Below that the function has a share of one vCPU "
        f"({1024 / MB_PER_VCPU:.2f} of one at 1,024 MB): no second core for a second thread to run on. At {batches}, "
        f"the served candidate's p50 on 2 threads is {ratios('served-2')} its p50 on 1: what a function of "
        f"{MB_PER_VCPU + 1:,} MB or more gets from its second vCPU. The count cannot follow the batch size: it is "
        "fixed when a session is built, and one session (one copy of the model in memory) serves every batch size.",
        f"**Spinning: {served.get('allow_spinning')}**, at every MemorySize and batch size: an idle intra-op "
        f"thread spins for its next piece of work instead of sleeping. On 2 threads at {batches}, the served "
        f"candidate's p50 with spinning off is {ratios('no-spin-2')} its p50 with spinning on; on 1 thread "
        "onnxruntime runs the graph on the calling thread, with no pool to spin. Lambda bills a request's "
        "duration, not its CPU time, so the spin adds nothing to the bill." + _faster(o, "no-spin-2", sizes),
        f"**Execution mode: {served.get('execution_mode')}**, {served.get('inter_op_num_threads')} inter-op "
        "thread, at every MemorySize and batch size: PARALLEL runs a graph's independent branches side by side "
        "on a pool of inter-op threads (with one, onnxruntime runs it as SEQUENTIAL, so it is timed here with "
        f"two), and a CNN like this one is a chain of layers. On 1 thread at {batches}, the served candidate's "
        f"p50 under PARALLEL is {ratios('parallel')} its p50 under SEQUENTIAL." + _faster(o, "parallel", sizes),
    ]
    return table + f"\n{method} Serving's settings, and why:\n\n" + "".join(f"- {line}\n" for line in why)


def _imports_section(r: dict[str, Any]) -> str:
    i, missing = _measured(r, "imports", "packages_ms")
    if missing:
        return missing
    e = r.get("imports_eager") or {}
    columns = [("as built (lazy)", i), ("eager", e)] if "packages_ms" in e else [("as built (lazy)", i)]
    text = ""
    for label, x in columns:
        text += (
            f"- {label}: import {spread_of(x['import_ms'], '{:.0f}')} ms, then the first request "
            f"{spread_of(x['first_request_ms'], '{:.0f}')} ms (model download, checksum and session: "
            f"{spread_of(x.get('model_load_ms'), '{:.0f}')} ms); peak RSS "
            f"{spread_of(x.get('peak_rss_after_import_mib'), '{:.0f}')} MiB after the import, "
            f"{spread_of(x.get('peak_rss_after_first_request_mib'), '{:.0f}')} MiB after the first request.\n"
        )
    text += (
        f"\nOwn import time of `{i['module']}`'s modules per top-level package (`python -X importtime`, which adds "
        "some overhead), paid at import (Lambda's INIT) or deferred to the first request:\n\n"
    )
    imported, first = i["packages_ms"]["import"], i["packages_ms"]["first_request"]
    names = list(dict.fromkeys([*list(imported)[:12], *list(first)[:12]]))
    header = ["package"]
    for label, _ in columns:
        header += [f"at import, {label} (ms)", f"first request, {label} (ms)"]
    rows = [
        [
            n,
            *[
                spread_of(x["packages_ms"][side].get(n), "{:.1f}")
                for _, x in columns
                for side in ("import", "first_request")
            ],
        ]
        for n in names
    ]
    return text + markdown_table(header, rows, "l" + "r" * (len(header) - 1))


def _lazy_vs_eager_section(r: dict[str, Any]) -> str:
    lve, missing = _measured(r, "lazy_vs_eager", "steps_ms")
    if missing:
        return missing
    text = (
        "What ApiFunction defers to the request that needs it, done at import instead by a wrapper around the "
        "same handler (`bench/eager_handler/app.py`: the handler's import, then each step). Eager, a step is "
        "paid in INIT by every cold start; lazy, INIT pays none of it and the first request that needs it pays "
        "it (timed in a fresh process right after the handler's import, in the same order).\n\n"
    )
    rows = [
        [
            v["label"],
            spread_of(v.get("eager_at_init"), "{:.1f}"),
            "0",
            spread_of(v.get("lazy_at_first_request"), "{:.1f}"),
        ]
        for v in lve["steps_ms"].values()
    ]
    handler = lve.get("handler_import_ms") or {}
    rows.append(
        [
            "`functions.api.app`'s own import (not deferred)",
            spread_of(handler.get("eager"), "{:.1f}"),
            spread_of(handler.get("lazy"), "{:.1f}"),
            "-",
        ]
    )
    text += markdown_table(
        ["work", "eager: at INIT (ms)", "lazy: at INIT (ms)", "lazy: at the first request needing it (ms)"],
        rows,
        "lrrr",
    )
    imported = lookup(r, "imports", "packages_ms", "import") or {}
    if imported:
        at_init = ", ".join(
            f"{name} {spread_of(imported.get(name), '{:.1f}') or '< 1'} ms"
            for name in ("botocore", "s3transfer", "onnxruntime")
        )
        text += f"\nAs built, INIT's own import time (`-X importtime`) of these packages: {at_init}.\n"
    cold_rows = []
    for key, label, fmt in (
        ("health_cold_s", "cold start, GET /health: needs none of it (s)", "{:.3f}"),
        ("health_init_ms", "INIT, GET /health container (ms)", "{:.0f}"),
        ("health_peak_rss_mib", "peak RSS, GET /health container (MiB)", "{:.0f}"),
        ("predict_cold_s", "cold start to the first prediction, served model (s)", "{:.3f}"),
        ("predict_init_ms", "INIT, prediction container (ms)", "{:.0f}"),
        ("predict_peak_rss_mib", "peak RSS, prediction container (MiB)", "{:.0f}"),
    ):
        pair = lve.get(key) or {}
        lazy, eager = as_stat(pair.get("lazy")), as_stat(pair.get("eager"))
        if lazy and eager:
            cold_rows.append(
                [
                    label,
                    spread_of(pair["lazy"], fmt),
                    spread_of(pair["eager"], fmt),
                    ("{:+" + fmt[2:]).format(eager.median - lazy.median),
                ]
            )
    if cold_rows:
        text += "\nThrough the Lambda RIE (the cold start table above), the handler as built against the eager one:\n\n"
        text += markdown_table(["figure", "lazy (as built)", "eager", "eager - lazy"], cold_rows, "lrrr")
    return text


def _load_section(r: dict[str, Any]) -> str:
    lt = r.get("load_test") or {}
    if "total" not in lt:
        return "Skipped (`--no-load-test` or `--quick`).\n" if not lt else f"Failed: {lt.get('error')}\n"
    rows = [
        [
            name,
            v["requests"],
            v["failures"],
            f"{v['requests_per_s']:.1f}",
            f"{v['p50_ms']:.0f}",
            f"{v['p99_ms']:.0f}",
            f"{v['max_ms']:.0f}",
        ]
        for name, v in [*lt["by_model"].items(), ("all", lt["total"])]
    ]
    text = (
        f"{lt['users']} clients for {lt['seconds']} s against `maas local start-api` (one local container per "
        f"function); {lt['pacing']}.\n\n"
    )
    return text + markdown_table(
        ["model", "requests", "errors", "req/s", "p50 (ms)", "p99 (ms)", "max (ms)"], rows, "lrrrrrr"
    )


def _rerun_section(r: dict[str, Any]) -> str:
    check = r.get("rerun_check")
    if not check:
        return "No earlier results.json to check this run against.\n"
    about = (
        f"the results.json this run replaced (written by `{check.get('previous_command')}` on "
        f"{check.get('previous_started_at')})"
    )
    if "skipped" in check:
        return f"Not checked against {about}: {check['skipped']}.\n"
    text = (
        f"Against {about}: **{check['inside']} of {check['checked']}** figures' medians fall within its min-max, "
        "read to 4 significant digits (a figure of one run is not checked)."
    )
    head = check.get("headline")
    if head:
        text += f" Of the summary table's and the goals' figures, **{head['inside']} of {head['checked']}**" + (
            f" (outside: {', '.join(f'`{n}`' for n in head['outside'])})." if head["outside"] else "."
        )
    speed = check.get("machine_speed")
    if speed:
        text += (
            f" The machine itself ran a fixed pure-Python workload in {speed['now']:.2f} ms against "
            f"{speed['before']:.2f} ms ({speed['change_pct']:+.1f}%)."
        )
    outside = check["outside"]
    if not outside:
        return text + "\n"
    rows = [
        [f"`{o['figure']}`", f"{o['median']:.4g}", f"{o['min']:.4g}-{o['max']:.4g}", f"{o['off_pct']:+.1f}%"]
        for o in outside[:15]
    ]
    more = f"\n{len(outside) - 15} more in results.json.\n" if len(outside) > 15 else ""
    header = ["figure", "this run", "earlier min-max", "beyond it"]
    return text + " Outside, the farthest first:\n\n" + markdown_table(header, rows, "lrrr") + more


def note_line(r: dict[str, Any]) -> str:
    """results.json's ``note``: what a reader must know of these figures that the run itself cannot say."""
    return f" {r['note']}" if r.get("note") else ""


def _speed(r: dict[str, Any]) -> str:
    loop = figure(r, "machine_speed", "python_loop_ms")
    return f"; a fixed pure-Python workload {loop.spread('{:.2f}')} ms" if loop else ""


def _method(r: dict[str, Any]) -> str:
    rounds = (r.get("settings") or {}).get("rounds") or 1
    spread = (
        f"A run of `make bench` takes them in {rounds} rounds spread over it (each round runs every timed part "
        "once in turn), so that the spread takes in the machine's drift over minutes; within a round, the short "
        "in-process runs (warm latency, compression latency, the bare batch floor) take turns, so that one "
        "figure's runs are seconds apart, not caught in the same moment."
        if rounds > 1
        else "A run of `make bench` takes them back to back (one round)."
    )
    return (
        f"Each figure is the median of repeated runs with the (min-max) of all of them. {spread} The spread is one "
        "run's of `make bench` (unless the line above says it pools several): it does not take in the machine's "
        "drift over hours, and a rerun at another hour may land outside it. Ratios are of medians taken over the "
        "same runs. results.json keeps each figure's median, min, max and count; the runs themselves go "
        "to the git-ignored bench/out/runs.json. Each round starts with the functions' files dropped from the page "
        "cache and read back by one uncounted cold start of each variant (`bench/pagecache.py` says why: how a "
        "file entered the cache changes the peak RSS of a process that maps it). Sizes and memory in MiB (2^20 "
        "bytes, the unit of Lambda's own limits).\n"
    )


def _large_section() -> str:
    """The size ladder of the last `make bench-large` (bench/results-large.json): it runs apart, since its
    400 MB models would push `make bench` past 15 minutes."""
    import json

    from bench.common import BENCH
    from bench.ladder_report import ladder_section

    path = BENCH / "results-large.json"
    if not path.exists():
        return "Not run yet: `make bench-large` writes bench/results-large.{json,md,png}.\n"
    large = json.loads(path.read_text())
    return (
        f"From `{large.get('command')}`, started {large.get('started_at')} (functions on "
        f"{(large.get('machine') or {}).get('function_runtime')}); the whole run, with BERT-base serving and the "
        "trained small transformer, is in [results-large.md](results-large.md).\n\n"
        + ladder_section(large, "results-large.png")
    )


def markdown(r: dict[str, Any]) -> str:
    parts = [
        "# Benchmark results\n",
        f"Written by `{r.get('command')}` on {r.get('started_at')} in {r.get('wall_s', 0):.0f} s; "
        f"`make bench` reruns it. Machine: {machine_line(r)}.{note_line(r)}\n",
        _method(r),
        "## Goals\n",
        goals_table(r),
        "## Rerun check\n",
        _rerun_section(r),
        "## Side by side\n",
        summary_table(r),
        "\n![benchmark plot](results.png)\n",
        "## Cold start and memory\n",
        "From spawning the Lambda Runtime Interface Emulator (with awslambdaric and the handler) to the first 200 "
        "for one API Gateway event, the model fetched from the embedded S3 into an empty /tmp; peak RSS is the "
        "runtime process's VmHWM after that request. INIT is the emulator's INIT REPORT (interpreter, awslambdaric, "
        "the handler's import). Files read from disk: the uncounted cold start of each variant right after its "
        "own files were dropped from the page cache (once a round), as on a host that has not run it yet.\n",
        _cold_table(r),
        "## Import-time work\n",
        _imports_section(r),
        "## Import-time work: lazy vs eager\n",
        _lazy_vs_eager_section(r),
        "## Deployment size\n",
        _size_section(r),
        "## Warm latency\n",
        "In-process calls of the handler with an API Gateway event (TensorFlow Serving body) against a bare call of "
        "the very session it holds on the same input (for TensorFlow: the loaded SavedModel's `serve`).\n",
        _latency_table(r),
        "## Cost per million predictions\n",
        cost_section(r),
        "## Batch scoring\n",
        _batch_section(r),
        "## Compression candidates\n",
        _compression_table(r),
        "## onnxruntime settings\n",
        _ort_settings_section(r),
        "## Load test\n",
        _load_section(r),
        "## Real-size models: the size ladder (`make bench-large`)\n",
        _large_section(),
    ]
    if r.get("failed_sections"):
        parts.append(f"\n**Parts that failed:** {', '.join(r['failed_sections'])} (see results.json).\n")
    return "\n".join(parts)


def update_readme(readme: Path, r: dict[str, Any]) -> bool:
    """Replace what stands between README's bench:summary markers; False when they are missing."""
    text = readme.read_text()
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.S)
    if not pattern.search(text):
        return False
    body = (
        f"{README_START}\n_{machine_line(r)}; {r.get('started_at')}.{note_line(r)}_\n\n{summary_table(r)}\n"
        f"{goals_table(r, why=False)}{README_END}"
    )
    readme.write_text(pattern.sub(lambda _: body, text, count=1))
    return True
