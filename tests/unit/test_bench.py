"""The arithmetic and rendering every benchmark figure goes through (bench/stats.py), and the report."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench.stats import Stat, compare, markdown_table, merge, percentile, ratio, summary


def test_a_figure_is_the_median_of_its_runs_with_min_and_max() -> None:
    stat = Stat.of([0.31, 0.29, 0.5, 0.30, 0.28])
    assert (stat.median, stat.min, stat.max, stat.n) == (0.30, 0.28, 0.5, 5)
    assert Stat.of([1.0, 2.0]).median == 1.5
    assert stat.spread("{:.2f}") == "0.30 (0.28-0.50)"
    assert Stat.of([7.0, 7.0]).spread("{:.0f}") == "7"


def test_a_figure_round_trips_through_results_json() -> None:
    stat = Stat.of([1.23456, 2.0, 3.0])
    assert Stat.from_dict(stat.to_dict(2)) == Stat(2.0, 1.23, 3.0, 3, (1.23, 2.0, 3.0))


def test_rounds_pool_their_runs_so_the_spread_covers_every_round() -> None:
    early = {"cold_s": Stat.of([0.45, 0.46]).to_dict(), "runs": [{"a": 1}], "label": "ours", "calls": 300}
    late = {"cold_s": Stat.of([0.47, 0.48, 0.49]).to_dict(), "runs": [{"a": 2}], "label": "ours", "extra": 1}
    merged = merge(early, late)
    assert Stat.from_dict(merged["cold_s"]) == Stat.of([0.45, 0.46, 0.47, 0.48, 0.49])
    assert merged["runs"] == [{"a": 1}, {"a": 2}]
    assert (merged["label"], merged["calls"], merged["extra"]) == ("ours", 300, 1)
    tenths = merge(Stat.of([270.3]).to_dict(1), Stat.of([271.0, 268.25]).to_dict(1))
    assert tenths["runs"] == [270.3, 271.0, 268.2] and tenths["median"] == 270.3


def test_a_figure_needs_a_run() -> None:
    with pytest.raises(ValueError):
        Stat.of([])


def test_percentiles_interpolate_between_ranks_like_numpy() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 100.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0  # unsorted input
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_ratio_of_nothing_is_none() -> None:
    assert ratio(1.0, 4.0) == 0.25
    assert ratio(1.0, 0.0) is None


def test_markdown_table_aligns_escapes_and_marks_misses() -> None:
    text = markdown_table(["goal", "measured", "met"], [["a|b", 1.5, True], ["c", None, False]], "lrc")
    assert text.splitlines() == [
        "| goal | measured | met |",
        "| --- | ---: | :---: |",
        "| a\\|b | 1.5 | yes |",
        "| c | - | **no** |",
    ]
    with pytest.raises(ValueError):
        markdown_table(["one"], [["a", "b"]])


def test_the_eager_wrapper_builds_what_the_first_prediction_would() -> None:
    """bench/eager_handler: its steps run on the handler as it is, and the lazy side's route exists."""
    import importlib.util

    from maas_core.functions.api import app

    path = Path(__file__).resolve().parents[2] / "bench" / "eager_handler" / "eager.py"
    spec = importlib.util.spec_from_file_location("maas_bench_eager", path)
    assert spec and spec.loader
    eager = importlib.util.module_from_spec(spec)
    sys.modules.pop("maas_bench_eager", None)
    spec.loader.exec_module(eager)
    routes = len(app.app._static_routes) + len(app.app._dynamic_routes)
    assert eager.route_models(app.app, eager.PREDICT) == 1  # the route the first prediction builds
    assert eager.route_models(app.app) == routes > 1
    eager.onnxruntime_session_options()
    assert set(eager.LABELS) == {"s3_client_made", "onnxruntime", "route_models"}


def test_the_report_sets_lazy_against_eager() -> None:
    from bench import report

    def stat(value: float) -> dict[str, float | int]:
        return {"median": value, "min": value, "max": value, "n": 1}

    results = {
        "lazy_vs_eager": {
            "steps_ms": {
                "onnxruntime": {"label": "onnx", "eager_at_init": stat(27), "lazy_at_first_request": stat(26)}
            },
            "handler_import_ms": {"lazy": stat(230), "eager": stat(232)},
            "health_cold_s": {"lazy": stat(0.285), "eager": stat(0.46)},
        }
    }
    text = report._lazy_vs_eager_section(results)
    assert "| onnx | 27.0 | 0 | 26.0 |" in text
    assert "| cold start, GET /health: needs none of it (s) | 0.285 | 0.460 | +0.175 |" in text


def test_the_report_sets_the_traced_handler_against_the_untraced_one() -> None:
    from bench import report

    def stat(value: float) -> dict[str, float | int]:
        return {"median": value, "min": value, "max": value, "n": 1}

    def row(handler: float) -> dict[str, object]:
        timed = {"p50_ms": stat(handler), "p99_ms": stat(handler * 1.3)}
        return {"handler": timed, "bare": {"p50_ms": stat(0.011), "p99_ms": stat(0.012)}, "instances": 1}

    text = report._latency_table({"latency": {"int8 x1": row(0.190), "int8 x1 traced": row(0.227)}})
    assert "| int8 x1 traced | 0.227 |" in text  # a row of its own, beside the untraced one
    assert "handler p50 0.227 ms against 0.190 untraced, +0.037 ms a request" in text
    assert "int8 x32 (the row" not in text  # not measured: nothing said


def test_a_rerun_is_checked_figure_by_figure_against_the_previous_spread() -> None:
    previous = {
        "cold_start": {"ours": {"cold_s": Stat.of([0.45, 0.46, 0.47]).to_dict(), "label": "ours"}},
        "latency": {"p50_ms": Stat.of([0.60, 0.62]).to_dict()},
        "single": Stat.of([5.0]).to_dict(),
    }
    current = {
        "cold_start": {"ours": {"cold_s": Stat.of([0.46, 0.47, 0.47]).to_dict()}},
        "latency": {"p50_ms": Stat.of([0.66, 0.70]).to_dict()},
        "single": Stat.of([9.0]).to_dict(),
        "new": Stat.of([1.0, 2.0]).to_dict(),
    }
    check = compare(previous, current)
    assert (check["checked"], check["inside"]) == (2, 1)
    [outside] = check["outside"]
    assert outside["figure"] == "latency/p50_ms"
    assert outside["off_pct"] == pytest.approx(100 * (0.68 - 0.62) / 0.62)


def test_the_page_cache_is_dropped_for_regular_files_only(tmp_path) -> None:
    """bench.pagecache: every regular file once, links and fifos skipped, nothing fails on them."""
    import os

    from bench.pagecache import drop

    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "module.so").write_bytes(b"x" * 5000)
    (tmp_path / "data.json").write_text("{}")
    (tmp_path / "link.so").symlink_to(tmp_path / "lib" / "module.so")
    os.mkfifo(tmp_path / "pipe")
    assert drop([tmp_path]) == {"files": 2, "bytes": 5002}


def test_the_rerun_check_reads_figures_as_reported_not_past_their_digits() -> None:
    previous = {"rss": Stat.of([109.6211, 109.7578]).to_dict()}
    assert compare(previous, {"rss": Stat.of([109.7578, 109.758]).to_dict()})["outside"] == []
    assert compare(previous, {"rss": Stat.of([109.9, 110.0]).to_dict()})["inside"] == 0


def test_results_json_keeps_each_figure_without_its_runs() -> None:
    """bench/results.json is the compact summary; the runs go to the ignored bench/out/runs.json."""
    results = {
        "machine": {"cpu": "Xeon", "load_average_at_start": [0.5, 0.4, 0.3]},
        "cold_start": {"ours": {"label": "ours", "cold_s": Stat.of([0.45, 0.47, 0.46]).to_dict(), "runs": [{"a": 1}]}},
        "rerun_check": {"checked": 1, "outside": [{"figure": "x"}]},
    }
    compact = summary(results)
    assert compact == {
        "machine": {"cpu": "Xeon", "load_average_at_start": [0.5, 0.4, 0.3]},
        "cold_start": {"ours": {"label": "ours", "cold_s": {"median": 0.46, "min": 0.45, "max": 0.47, "n": 3}}},
        "rerun_check": {"checked": 1, "outside": [{"figure": "x"}]},
    }
    assert summary(compact) == compact
    # The next run is checked against the compact figures as it was against the full ones.
    later = {"cold_start": {"ours": {"cold_s": Stat.of([0.48, 0.49]).to_dict()}}}
    assert compare(compact, later) == compare(results, later)


def test_the_committed_results_render_from_the_compact_summary(tmp_path) -> None:
    """`python -m bench --render-only` rewrites results.md from the committed results.json alone."""
    import json
    import shutil

    from bench import report, run

    bench = Path(__file__).resolve().parents[2] / "bench"
    stored = json.loads((bench / "results.json").read_text())
    assert not any(isinstance(v, dict) and "runs" in v for v in _dicts(stored))
    shutil.copy(bench / "results.json", tmp_path / "results.json")
    assert run.main(["--render-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "results.md").read_text() == (bench / "results.md").read_text()
    assert json.loads((tmp_path / "results.json").read_text()) == stored
    cold = stored["cold_start"]["ours_int8"]["cold_s"]  # the served model's cold start goal, from the stored figure
    assert f"{cold['median']:.3f} ({cold['min']:.3f}-{cold['max']:.3f}) s" in report.markdown(stored)


def _dicts(tree: object) -> list[dict]:
    if isinstance(tree, dict):
        return [tree, *(d for v in tree.values() for d in _dicts(v))]
    if isinstance(tree, list):
        return [d for v in tree for d in _dicts(v)]
    return []


def test_a_run_writes_its_runs_aside_and_only_the_figures_to_results_json(tmp_path) -> None:
    """bench.run._finish: bench/out/runs.json (git-ignored) has every run, results.json the figures."""
    import argparse
    import json

    from bench import run

    results = {
        "started_at": "2026-11-30T15:00:00+00:00",
        "command": "python -m bench",
        "machine": {"cpu": "Xeon"},
        "cold_start": {"ours_int8": {"label": "ours", "cold_s": Stat.of([0.45, 0.47]).to_dict(), "runs": [{"a": 1}]}},
    }
    args = argparse.Namespace(previous=None, no_readme=True)
    assert run._finish(results, run.Sections(results), tmp_path, args, 0.0) == 0
    raw = json.loads((tmp_path / "out" / "runs.json").read_text())
    assert raw["cold_start"]["ours_int8"]["cold_s"]["runs"] == [0.45, 0.47]
    assert raw["cold_start"]["ours_int8"]["runs"] == [{"a": 1}]
    stored = json.loads((tmp_path / "results.json").read_text())
    assert stored["cold_start"]["ours_int8"] == {
        "label": "ours",
        "cold_s": {"median": 0.46, "min": 0.45, "max": 0.47, "n": 2},
    }
    assert "0.460 (0.450-0.470) s" in (tmp_path / "results.md").read_text()


def test_the_inference_core_timed_beside_the_handler_answers_what_the_handler_answers(api, published) -> None:
    """bench.child._core is the handler's work without the framework around it (make bench's "core" figure):
    given the same event and the same loaded model, it writes the body the handler answers."""
    import json

    from bench.child import _core
    from bench.common import digits, predict_event
    from maas_core.functions.api import app

    event = predict_event("digits", digits(3))
    status, body, _ = api(event)
    assert status == 200
    assert json.loads(_core(app, event, app.models.get("digits"))()) == body
