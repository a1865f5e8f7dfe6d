"""bench/cost.py: dollars per million predictions from measured latencies and Lambda's published prices."""

from __future__ import annotations

import pytest

from bench.cost import (
    at_memory_ms,
    billed_ms,
    cold_start_per_million_usd,
    cost_section,
    per_million_requests_usd,
)


def _stat(value: float) -> dict[str, float | int]:
    return {"median": value, "min": value, "max": value, "n": 1}


def test_lambda_bills_each_request_rounded_up_to_the_millisecond() -> None:
    assert billed_ms(1.0001) == 2
    assert billed_ms(2.0) == 2
    assert billed_ms(0.2) == 1
    assert billed_ms(0.0) == 1  # no invocation bills less than 1 ms
    assert (
        billed_ms(0.1 * 3 * 10 / 1.5) == 2
    )  # 2.0000000000000004: float noise of a scaled 2 ms is not a third millisecond


def test_below_one_vcpu_cpu_bound_work_stretches_with_the_share_of_it() -> None:
    assert at_memory_ms(1.0, 1769) == 1.0
    assert at_memory_ms(1.0, 3538) == 1.0  # one thread gets no faster with a second vCPU
    assert at_memory_ms(1.0, 128) == pytest.approx(1769 / 128)
    assert at_memory_ms(0.637, 1024) == pytest.approx(1.1004, abs=1e-4)


def test_a_million_requests_cost_their_billed_gb_seconds_plus_the_request_charge() -> None:
    # 1 ms at 1 GB on x86_64: 0.001 GB-s x $0.0000166667, plus $0.20 per million requests.
    assert per_million_requests_usd(1.0, 1024, "x86_64") == pytest.approx(0.0166667 + 0.20)
    # 1.1 ms bills 2 ms; 128 MB is 0.125 GB.
    assert per_million_requests_usd(1.1, 128, "x86_64") == pytest.approx(2 * 0.125 * 0.0166667 + 0.20)
    # arm64 at the same latency: its lower GB-second price.
    assert per_million_requests_usd(8.805, 128, "arm64") == pytest.approx(9 * 0.125 * 0.0133334 + 0.20)


def test_a_cold_start_is_spread_over_the_requests_of_its_container() -> None:
    # 788 ms at 1 GB once per 1,000 requests: $0.0000131334 a cold start, $0.0131 per million requests.
    assert cold_start_per_million_usd(788.0, 1024, "x86_64", 1000) == pytest.approx(0.788 * 0.0166667 * 1e3 / 1e3)
    assert cold_start_per_million_usd(788.0, 1024, "x86_64", 100) == pytest.approx(0.788 * 0.0166667 * 10)


def test_the_section_prices_what_was_measured_and_says_what_does_not_fit() -> None:
    results = {
        "machine": {"cpu": "Test CPU", "machine": "x86_64"},
        "latency": {
            "int8 x1": {"handler": {"p50_ms": _stat(0.5), "p99_ms": _stat(0.6)}},
            "tensorflow x1": {"handler": {"p50_ms": _stat(0.5), "p99_ms": _stat(0.6)}},
        },
        "cold_start": {
            "ours_int8": {"cold_s": _stat(0.4), "peak_rss_mib": _stat(100.0)},
            "tensorflow": {"cold_s": _stat(2.5), "peak_rss_mib": _stat(600.0)},
        },
    }
    text = cost_section(results)
    lines = text.splitlines()
    # 0.5 ms x 1769/1024 = 0.864 ms: 1 ms billed, 0.6 ms at p99 -> 1.037 ms: 2 ms billed.
    assert "| ours, served ONNX | 1,024 | 0.500 | 0.864 | 1 | 2 | 0.2167 | 0.2133 | 3.5000 |" in lines
    # 0.4 s x 1769/1024 = 691.0 ms, amortised over 1,000 requests.
    assert "| ours, served ONNX | 1,024 | 0.400 | 0.691 | 0.0115 | 0.0092 |" in lines
    assert "| TensorFlow handler | 512 | 0.500 | does not fit: peak RSS 600 MiB | - | - | - | - | - |" in lines
    assert "ours, fp32 ONNX" not in text  # not measured in this run: no row, no invented figure
    assert "Test CPU" in text and "arm64 is priced at the same latency" in text
    assert cost_section({"latency": {}}).startswith("Not computed")
