"""The arithmetic and rendering every benchmark figure goes through (maas.bench)."""

from __future__ import annotations

import pytest

from maas.bench import Stat, compare, markdown_table, merge, percentile, ratio


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
    import sys
    from pathlib import Path

    from functions.api import app

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
    assert set(eager.LABELS) == {"boto3_s3_client", "onnxruntime", "route_models"}


def test_the_report_sets_lazy_against_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))  # bench/ runs from the project root
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


def _run(started: str, cold: list[float], fingerprint: str = "abc", **machine: object) -> dict:
    """A results.json of one `make bench` run, cut to what pooling reads."""
    from bench import pool

    results = {
        "started_at": started,
        "fingerprint": fingerprint,
        "machine": {"cpu": "Xeon", "cores": 2, "load_average_at_start": [0.5], **machine},
        "settings": {"rounds": 5},
        "failed_sections": [],
        "wall_s": 600.0,
        "load_test": {"total": {"requests": 3000, "failures": 0}},
        "cold_start": {"ours": {"cold_s": Stat.of(cold).to_dict(), "runs": [{"cold_s": c} for c in cold]}},
        "size": {"unzipped_mib": 97.9},
    }
    results["invocations"] = [pool.invocation(results)]
    return results


def test_reruns_of_the_same_code_pool_so_the_spread_covers_the_hours_between_them() -> None:
    from bench import pool

    first = _run("02:00", [0.45, 0.46, 0.47])
    later = _run("03:00", [0.48, 0.50, 0.49])
    later["size"] = {"unzipped_mib": 98.0}
    assert pool.why_not(first, later, ("rounds",)) is None
    pooled = pool.pool(first, later)
    assert Stat.from_dict(pooled["cold_start"]["ours"]["cold_s"]) == Stat.of([0.45, 0.46, 0.47, 0.48, 0.50, 0.49])
    assert [r["cold_s"] for r in pooled["cold_start"]["ours"]["runs"]] == [0.45, 0.46, 0.47, 0.48, 0.50, 0.49]
    assert [run["started_at"] for run in pooled["invocations"]] == ["02:00", "03:00"]
    assert pooled["size"] == {"unzipped_mib": 98.0} and pooled["started_at"] == "03:00"
    third = pool.pool(pooled, _run("04:00", [0.44]))
    assert Stat.from_dict(third["cold_start"]["ours"]["cold_s"]).n == 7 and len(third["invocations"]) == 3


def test_runs_of_other_code_machines_settings_or_with_a_failure_do_not_pool() -> None:
    from bench import pool

    first = _run("02:00", [0.45, 0.46])
    assert "code" in str(pool.why_not(first, _run("03:00", [0.5], fingerprint="def"), ("rounds",)))
    assert "code" in str(pool.why_not(first, _run("03:00", [0.5], fingerprint=""), ("rounds",)))
    assert "cores" in str(pool.why_not(first, _run("03:00", [0.5], cores=4), ("rounds",)))
    other = _run("03:00", [0.5])
    other["settings"] = {"rounds": 1}
    assert "rounds" in str(pool.why_not(first, other, ("rounds",)))
    failed = _run("03:00", [0.5])
    failed["failed_sections"] = ["latency"]
    assert "failed" in str(pool.why_not(first, failed, ("rounds",)))


def test_the_code_fingerprint_follows_tracked_files_but_not_what_a_run_writes(tmp_path) -> None:
    import subprocess

    from bench import pool

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "bench").mkdir()
    for name in ("app.py", "README.md", "bench/results.md"):
        (tmp_path / name).write_text("one")
    git("add", ".")
    before = pool.fingerprint(tmp_path)
    assert str(before).startswith("sha256:")
    (tmp_path / "README.md").write_text("two")
    (tmp_path / "bench/results.md").write_text("two")
    (tmp_path / "untracked.txt").write_text("x")
    assert pool.fingerprint(tmp_path) == before
    (tmp_path / "app.py").write_text("two")  # an uncommitted edit counts
    assert pool.fingerprint(tmp_path) != before
    assert pool.fingerprint(tmp_path / "bench") is not None  # inside the checkout: the same files
    outside = tmp_path.parent / f"{tmp_path.name}-not-git"
    outside.mkdir()
    assert pool.fingerprint(outside) is None
