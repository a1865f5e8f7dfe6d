"""Dollars per million predictions from the run's measured latencies and Lambda's published prices.

Only the latencies and cold starts are measured (results.json); the prices, how Lambda bills and how its
CPU follows memory are assumptions, stated once in training/cost.py (the training job prices its
compression candidates with them) and printed with the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.stats import figure, markdown_table
from training.cost import (  # the prices' one home, shared with the training job's candidate objective
    API_GATEWAY_REST_REQUEST_USD,
    GB_SECOND_USD,
    LAMBDA_REQUEST_USD,
    MB_PER_VCPU,
    MILLION,
    PRICES_AS_OF,
    REQUESTS_PER_CONTAINER,
    at_memory_ms,
    billed_ms,
    cold_start_per_million_usd,
    per_million_requests_usd,
)

MEMORIES_MB = (128, 512, 1024)

# (label, warm latency row in results.json's "latency", its cold start in "cold_start")
FUNCTIONS = (
    ("ours, served ONNX", "int8 x1", "ours_int8"),
    ("ours, fp32 ONNX", "fp32 x1", "ours_fp32"),
    ("TensorFlow handler", "tensorflow x1", "tensorflow"),
)


@dataclass(frozen=True)
class _Function:
    label: str
    warm_ms: float
    warm_p99_ms: float | None
    cold_s: float | None
    peak_rss_mib: float | None

    def fits(self, memory_mb: int) -> bool:
        return self.peak_rss_mib is None or self.peak_rss_mib <= memory_mb


def _measured(r: dict[str, Any]) -> list[_Function]:
    out = []
    for label, latency_row, cold_key in FUNCTIONS:
        warm = figure(r, "latency", latency_row, "handler", "p50_ms")
        if warm is None:
            continue
        p99 = figure(r, "latency", latency_row, "handler", "p99_ms")
        cold, rss = figure(r, "cold_start", cold_key, "cold_s"), figure(r, "cold_start", cold_key, "peak_rss_mib")
        out.append(
            _Function(
                label,
                warm.median,
                p99.median if p99 else None,
                cold.median if cold else None,
                rss.median if rss else None,
            )
        )
    return out


def _no_fit(f: _Function) -> str:
    return f"does not fit: peak RSS {f.peak_rss_mib:.0f} MiB"


def _usd(value: float) -> str:
    return f"{value:,.4f}"


def _warm_rows(functions: list[_Function]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for f in functions:
        for mb in MEMORIES_MB:
            if not f.fits(mb):
                rows.append([f.label, f"{mb:,}", f"{f.warm_ms:.3f}", _no_fit(f)] + [None] * 5)
                continue
            ms = at_memory_ms(f.warm_ms, mb)
            rows.append(
                [
                    f.label,
                    f"{mb:,}",
                    f"{f.warm_ms:.3f}",
                    f"{ms:.3f}",
                    billed_ms(ms),
                    billed_ms(at_memory_ms(f.warm_p99_ms, mb)) if f.warm_p99_ms else None,
                    _usd(per_million_requests_usd(ms, mb, "x86_64")),
                    _usd(per_million_requests_usd(ms, mb, "arm64")),
                    _usd(MILLION * API_GATEWAY_REST_REQUEST_USD),
                ]
            )
    return rows


def _cold_rows(functions: list[_Function]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for f in functions:
        if f.cold_s is None:
            continue
        for mb in MEMORIES_MB:
            if not f.fits(mb):
                rows.append([f.label, f"{mb:,}", f"{f.cold_s:.3f}", _no_fit(f), None, None])
                continue
            ms = at_memory_ms(1000 * f.cold_s, mb)
            rows.append(
                [
                    f.label,
                    f"{mb:,}",
                    f"{f.cold_s:.3f}",
                    f"{ms / 1000:.3f}",
                    _usd(cold_start_per_million_usd(ms, mb, "x86_64", REQUESTS_PER_CONTAINER)),
                    _usd(cold_start_per_million_usd(ms, mb, "arm64", REQUESTS_PER_CONTAINER)),
                ]
            )
    return rows


def cost_section(r: dict[str, Any]) -> str:
    functions = _measured(r)
    if not functions:
        return "Not computed: the run measured no warm latency.\n"
    m = r.get("machine") or {}
    text = (
        f"**Measured here**: each function's warm handler p50 at 1 instance (the warm latency table above: one "
        f"request at a time, as a Lambda container serves them), its cold start and its peak RSS, on this "
        f"machine's {m.get('cpu')} ({m.get('machine')}), ONNX Runtime on one thread (the handler's "
        f"`lambda_vcpus()` below {MB_PER_VCPU:,} MB; TensorFlow keeps its default thread pools). **Assumed, not "
        f"measured**: AWS's us-east-1 list prices as known on {PRICES_AS_OF} (first tier; not read by the run: "
        "check aws.amazon.com/lambda/pricing): "
        f"${GB_SECOND_USD['x86_64']:.10f} per GB-second on x86_64, ${GB_SECOND_USD['arm64']:.10f} on arm64, "
        f"${LAMBDA_REQUEST_USD * MILLION:.2f} per million Lambda requests, "
        f"${API_GATEWAY_REST_REQUEST_USD * MILLION:.2f} per million API Gateway REST requests (its own column: "
        f"add it for the cost behind the API); duration billed rounded up to 1 ms at MemorySize / 1,024 GB; "
        f"one core here does the work of one Lambda vCPU, and below {MB_PER_VCPU:,} MB (one vCPU) Lambda gives "
        f"a share of one, so CPU-bound work takes {MB_PER_VCPU:,} / MemorySize times as long: every duration "
        "at 128, 512 and 1,024 MB is this scaling of the measured one, not a measurement. arm64 is priced at "
        "the same latency as x86_64: no arm64 CPU was measured here. A function whose measured peak RSS "
        "exceeds the memory does not fit.\n\n"
        "Warm requests, priced at the p50 (a request at the p99 would bill the milliseconds in its column):\n\n"
    )
    text += markdown_table(
        [
            "function",
            "memory (MB)",
            "measured p50 (ms)",
            "assumed at this memory (ms)",
            "billed (ms)",
            "billed at p99 (ms)",
            "Lambda x86_64 ($/M)",
            "Lambda arm64 ($/M)",
            "API Gateway REST ($/M)",
        ],
        _warm_rows(functions),
        "lrrrrrrrr",
    )
    text += (
        f"\nCold starts, amortised over {REQUESTS_PER_CONTAINER:,} requests per container: the measured spawn to "
        "first 200 (the cold start table above: INIT and the first request; assumed billed whole, as Lambda "
        "bills INIT since August 2025) scaled as above, which overstates the part spent waiting on S3; add it "
        "to the warm figure:\n\n"
    )
    text += markdown_table(
        [
            "function",
            "memory (MB)",
            "measured cold start (s)",
            "assumed at this memory (s)",
            "x86_64 ($/M)",
            "arm64 ($/M)",
        ],
        _cold_rows(functions),
        "lrrrrr",
    )
    return text
