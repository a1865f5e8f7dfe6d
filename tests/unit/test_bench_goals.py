"""bench/goals.py: issue 19's request-path goals, judged on a synthetic run's figures."""

from __future__ import annotations

from typing import Any

from bench.goals import goals


def _stat(value: float) -> dict[str, float | int]:
    return {"median": value, "min": value, "max": value, "n": 1}


def _row(handler_p50: float, handler_p99: float, bare_p50: float) -> dict[str, Any]:
    return {
        "handler": {"p50_ms": _stat(handler_p50), "p99_ms": _stat(handler_p99)},
        "bare": {"p50_ms": _stat(bare_p50), "p99_ms": _stat(bare_p50)},
    }


def _candidate(method: str, accuracy: float, one_ms: float, batch_ms: float | None) -> dict[str, Any]:
    timed: dict[str, Any] = {"latency": {"p50_ms": _stat(one_ms)}}
    if batch_ms is not None:
        timed["batch_latency"] = {"p50_ms": _stat(batch_ms)}
    return {"method": method, "accuracy": accuracy, "reason": f"{method}'s reason", **timed}


def _results(*, int8_32: dict[str, Any], batch_ms: float | None = 0.30) -> dict[str, Any]:
    return {
        "latency": {
            "int8 x1": _row(0.20, 0.30, 0.12),
            "int8 x32": int8_32,
            "fp32 x32": _row(2.0, 3.0, 0.70),
            "tensorflow x1": _row(0.571, 0.8, 0.48),
            "tensorflow x32": _row(1.941, 2.5, 0.798),
        },
        "cold_start": {"ours_int8": {"cold_s": _stat(0.30)}, "tensorflow": {"cold_s": _stat(2.5)}},
        "compression": {
            "published_by_the_job": "int8-static",
            "objective": "cost",
            "max_accuracy_drop_points": 0.5,
            "candidates": {
                "fp32": _candidate("fp32", 0.986, 0.026, 0.33),
                "int8-dynamic": _candidate("int8-dynamic", 0.986, 0.125, 2.4),
                "int8-static": _candidate("int8-static", 0.986, 0.025, batch_ms),
                "distilled": _candidate("distilled", 0.950, 0.010, 0.10),  # faster, but outside the gate
            },
        },
    }


def _by_goal(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["goal"]: g for g in goals(results)}


def test_each_request_path_goal_is_judged_on_its_own_figures() -> None:
    found = _by_goal(_results(int8_32=_row(3.9, 9.0, 3.3)))
    overhead = found["warm handler p50 - bare session.run p50, 1 instance"]
    assert (overhead["target"], overhead["measured"], overhead["met"]) == (
        "≤ 0.10 ms",
        "0.080 ms (0.200 - 0.120 ms)",
        True,
    )
    overhead = found["warm handler p50 - bare session.run p50, 32 instances"]
    assert (overhead["target"], overhead["measured"], overhead["met"]) == (
        "≤ 0.50 ms",
        "0.600 ms (3.900 - 3.300 ms)",
        False,
    )
    assert found["warm handler p50 vs the TensorFlow handler's, 1 instance"]["met"] is True  # 0.200 vs 0.571
    versus = found["warm handler p50 vs the TensorFlow handler's, 32 instances"]
    assert versus["measured"] == "2.01x (3.900 vs 1.941 ms)" and not versus["met"]
    assert "TensorFlow's 1.143 ms to its model call" in versus["holds_it_back"]
    assert found["warm handler p99 vs its p50, 1 instance"]["met"] is True  # 1.5x
    tail = found["warm handler p99 vs its p50, 32 instances"]
    assert tail["measured"] == "2.31x (9.000 vs 3.900 ms)" and not tail["met"]
    threads = found["bare onnxruntime (fp32) vs bare TensorFlow, 32 instances"]
    assert threads["measured"] == "0.88x (0.700 vs 0.798 ms)" and threads["met"]
    cold = found["cold start vs TensorFlow handler"]
    assert cold["target"] == "≤ 1/8" and cold["measured"] == "1/8.3 (0.300 vs 2.50 s)" and cold["met"]


def test_the_published_candidate_is_held_to_the_fastest_within_the_gate_at_both_batches() -> None:
    found = _by_goal(_results(int8_32=_row(3.9, 9.0, 3.3), batch_ms=0.40))
    one = found["the job's published candidate (int8-static) bare p50 vs the fastest within the gate, batch 1"]
    # distilled is faster still, but 3.6 points below fp32: outside the gate, not a candidate to match.
    assert one["measured"] == "1.00x (0.025 vs int8-static's 0.025 ms)" and one["met"]
    many = found["the job's published candidate (int8-static) bare p50 vs the fastest within the gate, batch 32"]
    assert many["measured"] == "1.21x (0.400 vs fp32's 0.330 ms)" and many["met"] is False
    assert many["holds_it_back"] == "the job's objective: cost (published: int8-static's reason)"


def test_a_figure_the_run_did_not_measure_is_said_so_not_judged() -> None:
    found = _by_goal(_results(int8_32=_row(3.9, 9.0, 3.3), batch_ms=None))
    many = found["the job's published candidate (int8-static) bare p50 vs the fastest within the gate, batch 32"]
    assert many["met"] is None and many["measured"] == "not measured in this results.json"
    assert "warm handler p50 vs bare session.run, 1 instance" not in found, "issue 19's goals replace the 1.5x one"


def test_the_overhead_goal_says_how_much_is_the_inference_core_and_how_much_the_framework_around_it() -> None:
    """Handler p50 0.25 ms, its inference core alone (bench.child._core) 0.05, bare 0.01: 0.04 ms is the
    core's JSON and checks, 0.20 the resolver, validation and decorators around it."""
    results = _results(int8_32=_row(3.9, 9.0, 3.3))
    results["latency"]["int8 x1"] = {**_row(0.25, 0.30, 0.01), "core": {"p50_ms": _stat(0.05)}}
    why = _by_goal(results)["warm handler p50 - bare session.run p50, 1 instance"]["holds_it_back"]
    assert why.startswith("0.240 ms = 0.040 ms in the inference core"), why
    assert "+ 0.200 ms around it (Powertools' resolver" in why, why
    # Without a core figure (a run before it was measured) the goal falls back to the profile's shares.
    assert (
        "inference core"
        not in _by_goal(_results(int8_32=_row(3.9, 9.0, 3.3)))["warm handler p50 - bare session.run p50, 32 instances"][
            "holds_it_back"
        ]
    )
