"""The arithmetic and rendering every benchmark figure goes through (maas.bench)."""

from __future__ import annotations

import pytest

from maas.bench import Stat, markdown_table, percentile, ratio


def test_a_figure_is_the_median_of_its_runs_with_min_and_max() -> None:
    stat = Stat.of([0.31, 0.29, 0.5, 0.30, 0.28])
    assert (stat.median, stat.min, stat.max, stat.n) == (0.30, 0.28, 0.5, 5)
    assert Stat.of([1.0, 2.0]).median == 1.5
    assert stat.spread("{:.2f}") == "0.30 (0.28-0.50)"
    assert Stat.of([7.0, 7.0]).spread("{:.0f}") == "7"


def test_a_figure_round_trips_through_results_json() -> None:
    stat = Stat.of([1.23456, 2.0, 3.0])
    assert Stat.from_dict(stat.to_dict(2)) == Stat(2.0, 1.23, 3.0, 3)


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
