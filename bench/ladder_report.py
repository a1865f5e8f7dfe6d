"""bench/results-large.{json,md,png}: the size ladder's goals, tables and plot, from its results alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common import say, write_json
from bench.goals import _goal
from bench.ladder_models import BASE, FORMS
from bench.report import _latency_table
from bench.stats import MIB, as_stat, figure, lookup, markdown_table, spread_of, summary
from training.weights import SPLIT_THRESHOLD_BYTES

COLD_RATIO_MAX = 1.3  # issue 17: cold start of the ~110M int8 model <= 1.3 x (download alone + build alone)
RSS_PER_BYTE, RSS_FIXED_MIB = 1.5, 120  # issue 17: peak RSS of a cold request <= 1.5 x file size + 120 MiB
INT8_SPEEDUP_MIN = 2.0  # issue 17: int8 >= 2x faster than fp32 at batch 1 ...
INT8_POINTS_MAX = 1.0  # ... with <= 1 point of accuracy lost
SMALL_ACCURACY_MIN = 0.90  # issue 17: the small transformer trained here, on its held-out set
MOTO_NOTE = (
    "moto serves each ranged GET by copying the whole object under a lock (bench/loading.py), so here the "
    "registry's ranged download costs about one full copy per 8 MiB part and grows with the square of the size; "
    "on S3 each range is its own transfer. The download is therefore given both ways: the registry's ranged path "
    "(what the cold start pays here) and one streamed GET (the object's transfer without moto's copies)."
)


def rss_limit_mib(size_bytes: int) -> float:
    return RSS_PER_BYTE * size_bytes / MIB + RSS_FIXED_MIB


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = [_cold_ratio_goal(results), _rss_goal(results), _int8_goal(results), _small_accuracy_goal(results)]
    return [g for g in out if g is not None]


def _cold_ratio_goal(r: dict[str, Any]) -> dict[str, Any] | None:
    model = lookup(r, "ladder", f"{BASE}/int8")
    if model is None:
        return None
    ratio = as_stat(model["cold_preloaded_over_parts_ranged"])
    on_request = as_stat(model["cold_over_parts_ranged"])
    cold, download, build = (as_stat(model[k]) for k in ("cold_preloaded_s", "download_ranged_s", "build_s"))
    one_get = as_stat(model["cold_preloaded_over_parts_one_get"])
    assert ratio and on_request and cold and download and build and one_get
    measured = (
        f"preloaded (PRELOAD_MODELS): {ratio.spread('{:.2f}')}x (cold {cold.median:.2f} s; download "
        f"{download.median:.2f} s + build {build.median:.2f} s); loaded by the request: {on_request.median:.2f}x"
    )
    why = (
        f"the cold start adds the interpreter, the handler's import and the request to the parts; preloading "
        f"overlaps the download with them, loading on the request does not; against one streamed GET instead of "
        f"the ranged download the preloaded ratio is {one_get.median:.2f}x"
    )
    floor = figure(r, "ladder", "1mb/int8", "cold_s")
    if floor:
        allowed = (COLD_RATIO_MAX - 1) * (download.median + build.median)
        why += f"; the 1 MB model's whole cold start, {floor.median:.2f} s, is what 1.3x leaves {allowed:.2f} s for"
    return _goal(
        f"cold start of the ~110M int8 model vs download + build alone ({BASE})",
        f"≤ {COLD_RATIO_MAX}x",
        measured,
        ratio.median <= COLD_RATIO_MAX,
        why,
    )


def _rss_goal(r: dict[str, Any]) -> dict[str, Any] | None:
    ladder = r.get("ladder") or {}
    if not ladder:
        return None
    worst, worst_share, missed = "", 0.0, []
    for key, model in ladder.items():
        limit = rss_limit_mib(model["size_bytes"])
        # Either cold request, loaded by it or preloaded: the higher peak is the one the function must hold.
        rss = max(as_stat(model[k]).median for k in ("peak_rss_mib", "peak_rss_preloaded_mib"))  # type: ignore[union-attr]
        if rss / limit > worst_share:
            worst, worst_share = key, rss / limit
        if rss > limit:
            missed.append(key)
    model = ladder[worst]
    peak = max(as_stat(model[k]).median for k in ("peak_rss_mib", "peak_rss_preloaded_mib"))  # type: ignore[union-attr]
    built = as_stat(model["build_peak_rss_over_baseline_mib"])
    assert built
    limit, size_mib = rss_limit_mib(model["size_bytes"]), model["size_bytes"] / MIB
    why = [f"over the limit: {', '.join(missed) or 'none'}"]
    floor = figure(r, "ladder", "1mb/int8", "peak_rss_mib")
    if floor:
        why.append(
            f"the 1 MB model's cold request alone peaks at {floor.median:.0f} MiB (interpreter, handler, onnxruntime)"
        )
    why.append(f"building {worst}'s session alone adds {built.median:.0f} MiB for its {size_mib:.0f} MiB file")
    return _goal(
        "peak RSS of a cold request, every model of the ladder",
        f"≤ {RSS_PER_BYTE} x file + {RSS_FIXED_MIB} MiB",
        f"closest to its limit: {worst}, {peak:.0f} MiB of {limit:.0f} MiB allowed",
        not missed,
        "; ".join(why),
    )


def _int8_goal(r: dict[str, Any]) -> dict[str, Any] | None:
    fp32, int8 = (figure(r, "serving", f"{form} x1", "handler", "p50_ms") for form in FORMS)
    if fp32 is None or int8 is None:
        return None
    bare32, bare8 = (figure(r, "serving", f"{form} x1", "bare", "p50_ms") for form in FORMS)
    speedup = fp32.median / int8.median
    bare = f"; bare session.run {bare32.median / bare8.median:.2f}x" if bare32 and bare8 else ""
    lost = _accuracy_lost(r)
    accuracy = f"; accuracy lost, trained small model: {lost:.1f} points" if lost is not None else ""
    return _goal(
        f"int8 vs fp32 at batch 1, 128 tokens ({BASE}, handler p50)",
        f"≥ {INT8_SPEEDUP_MIN:g}x faster, ≤ {INT8_POINTS_MAX:g} point of accuracy lost (the trained small model)",
        f"{speedup:.2f}x ({fp32.median:.1f} vs {int8.median:.1f} ms){bare}{accuracy or '; accuracy not measured'}",
        speedup >= INT8_SPEEDUP_MIN and lost is not None and lost <= INT8_POINTS_MAX,
        "dynamic quantisation quantises MatMul/Gemm weights only; attention's activations, softmax, layer norm and "
        "GELU stay fp32, and the activations are quantised per call",
    )


def _small_accuracy_goal(r: dict[str, Any]) -> dict[str, Any] | None:
    published = lookup(r, "small_compression", "published_by_the_job")
    accuracy = lookup(r, "small_compression", "candidates", str(published), "accuracy")
    if accuracy is None:
        return None
    rows = lookup(r, "small_compression", "eval_rows")
    return _goal(
        "the small transformer trained here, held-out accuracy (as published)",
        f"≥ {SMALL_ACCURACY_MIN}",
        f"{accuracy:.4f} ({published}, {rows} rows)",
        accuracy >= SMALL_ACCURACY_MIN,
        "the bundled reviews are generated from templates: a harder set (text_data's negated_fraction) would tell more",
    )


def _accuracy_lost(r: dict[str, Any]) -> float | None:
    """Points of held-out accuracy int8 (dynamic) loses against fp32 on the trained small transformer."""
    fp32, int8 = (lookup(r, "small_compression", "candidates", m, "accuracy") for m in ("fp32", "int8-dynamic"))
    return 100 * (fp32 - int8) if fp32 is not None and int8 is not None else None


def _small_section(r: dict[str, Any]) -> str:
    small = r.get("small_compression") or {}
    if "candidates" not in small:
        return f"Not measured: {small.get('error') or small.get('missing') or 'skipped (--no-small)'}\n"
    rows = [
        [
            method,
            f"{c['size_bytes'] / 1024:,.0f}" if c.get("size_bytes") else None,
            f"{c['accuracy']:.4f}" if c.get("accuracy") is not None else None,
            spread_of(lookup(c, "latency", "p50_ms"), "{:.3f}"),
            spread_of(lookup(c, "latency", "p99_ms"), "{:.3f}"),
            c.get("accepted"),
            c.get("reason") or "",
        ]
        for method, c in small["candidates"].items()
    ]
    trained = "reused from the cache" if small.get("trained_now_s") is None else f"{small['trained_now_s']:.0f} s"
    return (
        f"Trained by the job (`{small['hyperparameters']}`, {trained}); accuracy on its {small.get('eval_rows')} "
        f"held-out rows, latency of one text ({small.get('sequence_length')} ids) on one thread; the job published "
        f"`{small.get('published_by_the_job')}`.\n\n"
        + markdown_table(("candidate", "KiB", "accuracy", "p50 ms", "p99 ms", "accepted", "why not"), rows, "lrrrrcl")
    )


def _ladder_rows(results: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for key, model in (results.get("ladder") or {}).items():
        rows.append(
            [
                f"{key} (split)" if model.get("split") else key,
                f"{model['size_bytes'] / MIB:.1f}",
                spread_of(model["cold_s"], "{:.2f}"),
                spread_of(model["peak_rss_mib"], "{:.0f}"),
                spread_of(model["cold_preloaded_s"], "{:.2f}"),
                spread_of(model["peak_rss_preloaded_mib"], "{:.0f}"),
                f"{rss_limit_mib(model['size_bytes']):.0f}",
                spread_of(model["download_ranged_s"], "{:.2f}"),
                spread_of(model["download_one_get_s"], "{:.2f}"),
                spread_of(model["build_s"], "{:.2f}"),
                spread_of(model["cold_over_parts_ranged"], "{:.2f}"),
                spread_of(model["cold_preloaded_over_parts_ranged"], "{:.2f}"),
            ]
        )
    return rows


LADDER_METHOD = (
    "Cold start: spawn to the first 200 through the Lambda RIE, one 128-token text, the model fetched from the "
    "embedded S3 into an empty /tmp; peak RSS: the runtime process's VmHWM after that request. Each model twice: "
    "loaded by that request, and preloaded (`PRELOAD_MODELS` naming it: the download starts during INIT, "
    "overlapping the handler's imports, and the request waits for what is left). In the same run, "
    "alone: the download (registry's ranged GETs, and one GET) and the session build from the local file "
    "(`model_cache.build_session`, a fresh process). Ratios are per run, then the median. Models of "
    f"{SPLIT_THRESHOLD_BYTES / 2**20:g} MiB or more are stored split, as the training job publishes them "
    "(weights in `model.onnx.data` beside the "
    "graph: onnxruntime holds them once, not twice, while it builds); MiB is graph and weights together.\n"
)


def ladder_table(results: dict[str, Any]) -> str:
    headers = (
        "model",
        "MiB",
        "cold start s",
        "peak RSS MiB",
        "preloaded cold s",
        "preloaded RSS MiB",
        "RSS goal MiB",
        "download ranged s",
        "download one GET s",
        "build s",
        "cold / (ranged + build)",
        "preloaded / (ranged + build)",
    )
    return markdown_table(headers, _ladder_rows(results), "lrrrrrrrrrrr")


def ladder_section(results: dict[str, Any], plot: str) -> str:
    """The size ladder's method, table and plot: in results-large.md, and in make bench's results.md."""
    return "\n".join(
        [
            LADDER_METHOD,
            MOTO_NOTE + "\n",
            ladder_table(results),
            f"\n![cold start and peak RSS against model size]({plot})\n",
        ]
    )


def markdown(results: dict[str, Any]) -> str:
    machine = results.get("machine") or {}
    lines = [
        "# Benchmark: the size ladder and transformer serving (`make bench-large`)\n",
        f"`{results.get('command')}`, started {results.get('started_at')}, {results.get('wall_s', 0):.0f} s. "
        f"{machine.get('cpu')}, {machine.get('cores')} cores, {machine.get('memory_gib')} GiB; functions on "
        f"{machine.get('function_runtime')}; onnxruntime {machine.get('onnxruntime')}. ApiFunction as template.yaml "
        f"declares it ({(results.get('function') or {}).get('memory_mb')} MB). Each figure is the median of "
        f"{(results.get('settings') or {}).get('runs')} runs of this one run with its min-max.\n",
        "## Models\n",
        "Transformer encoders from `training/families/transformer.py`'s `build`, **untrained** (Keras' initial "
        "weights: size, load and speed only, no accuracy); each exported by `training.export.export_onnx` (parity "
        "checked against Keras) and quantised by `training.compress.quantize_int8` (onnxruntime's dynamic int8), "
        "with a WordPiece tokenizer from the bundled reviews. The 400 MB rung is the `base` preset (BERT-base).\n",
    ]
    rungs = results.get("rungs") or {}
    sizes = {key: m["size_bytes"] for key, m in (results.get("ladder") or {}).items()}
    lines.append(
        markdown_table(
            ("rung", "parameters", "layers", "hidden", "heads", "feed-forward", "vocabulary", "fp32 MiB", "int8 MiB"),
            [
                [
                    name,
                    f"{r['parameters']:,}",
                    r["layers"],
                    r["hidden_size"],
                    r["heads"],
                    r["feed_forward_size"],
                    r["vocabulary_size"],
                    *(f"{sizes[f'{name}/{f}'] / MIB:.1f}" if f"{name}/{f}" in sizes else None for f in FORMS),
                ]
                for name, r in rungs.items()
            ],
            "lrrrrrrrr",
        )
    )
    lines += [
        "\n## Size ladder\n",
        ladder_section(results, "results-large.png"),
        f"\n## Transformer serving ({BASE}, 128 tokens)\n",
        "Warm latency per request through the handler (raw text in: tokenising, validation, JSON) and a bare "
        "`session.run` on the handler's own session with the same ids; one warm process per model.\n",
        _latency_table({"latency": results.get("serving") or {}}),
        "\n## The trained small transformer: fp32 vs int8 vs fp16\n",
        _small_section(results),
        "\n## Goals\n",
        markdown_table(
            ("goal", "target", "measured", "met", "what holds it back"),
            [[g["goal"], g["target"], g["measured"], g["met"], g["holds_it_back"]] for g in results["goals"]],
        ),
    ]
    return "\n".join(lines)


def draw(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ladder = results.get("ladder") or {}
    fig, (cold_ax, rss_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for form, colour in zip(FORMS, ("#7fb2dd", "#2b7bba"), strict=True):
        models = sorted((m for m in ladder.values() if m["form"] == form), key=lambda m: m["size_bytes"])
        if not models:
            continue
        x = [m["size_bytes"] / MIB for m in models]
        for ax, key in ((cold_ax, "cold_s"), (cold_ax, "cold_preloaded_s"), (rss_ax, "peak_rss_mib")):
            stats = [as_stat(m[key]) for m in models]
            median = [s.median for s in stats if s]
            low = [s.median - s.min for s in stats if s]
            high = [s.max - s.median for s in stats if s]
            marker = "s" if "preloaded" in key else "o"
            ax.errorbar(x, median, yerr=[low, high], marker=marker, color=colour, capsize=3, label=f"{form}: {key}")
        parts = [as_stat(m["download_ranged_s"]).median + as_stat(m["build_s"]).median for m in models]  # type: ignore[union-attr]
        cold_ax.plot(x, parts, "--", color=colour, label=f"{form}: download (ranged) + build alone")
    sizes = sorted(m["size_bytes"] / MIB for m in ladder.values())
    if sizes:
        rss_ax.plot(sizes, [RSS_PER_BYTE * s + RSS_FIXED_MIB for s in sizes], ":", color="#d9642c", label="goal")
    for ax, title in ((cold_ax, "cold start (s)"), (rss_ax, "peak RSS of the cold request (MiB)")):
        ax.set_xscale("log")
        ax.set_xlabel("model.onnx (MiB)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Size ladder: untrained transformer encoders, fp32 and int8 (medians, min-max bars)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(results: dict[str, Any], out: Path) -> int:
    """Goals, results-large.json (figures without their runs), results-large.md and the plot; 0 if written."""
    results["goals"] = goals(results)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results-large.json", summary(results))
    (out / "results-large.md").write_text(markdown(results))
    draw(results, out / "results-large.png")
    say(f"wrote {out / 'results-large.json'}, {out / 'results-large.md'}, {out / 'results-large.png'}")
    for goal in results["goals"]:
        say(f"   {'met ' if goal['met'] else 'MISS'} {goal['goal']}: {goal['measured']}")
    return 0
