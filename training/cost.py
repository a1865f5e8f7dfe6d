"""What a Lambda request costs: Lambda's prices, how it bills, and a compression candidate's expected cost.

The one home of the prices: the training job prices its candidates here (``objective=cost``,
training.compress) and bench/cost.py prices the benchmark's measured latencies with the same figures.
Only latencies and sizes are measured; everything here is an assumption, stated once.
"""

from __future__ import annotations

import math

from maas_core.shared.sizing import MB_PER_VCPU

# What the gate publishes among the candidates within it (the ``objective`` hyperparameter; training.compress).
# Here, where the CLI reads them without the compression code's imports.
COST, LATENCY, SIZE = "cost", "latency", "size"
OBJECTIVES = (COST, LATENCY, SIZE)
DEFAULT_OBJECTIVE = COST

# us-east-1 list prices (first tier: the first 6 billion x86 / 7.5 billion arm64 GB-seconds a month),
# as the authors knew them on this date (aws.amazon.com/lambda/pricing and /api-gateway/pricing; not
# re-read then: this machine has no network); nothing reads them at run time: check them there before
# relying on a figure priced with them.
PRICES_AS_OF = "2026-11-30"
GB_SECOND_USD = {"x86_64": 0.0000166667, "arm64": 0.0000133334}
LAMBDA_REQUEST_USD = 0.20 / 1e6
API_GATEWAY_REST_REQUEST_USD = 3.50 / 1e6  # REST API, first 333 million requests a month
MILLION = 1e6


# The candidate's expected cost (training.compress, objective "cost"). Each is an assumption:
DEFAULT_MEMORY_MB = 1024  # template.yaml's MemorySize default: ApiFunction's memory, where requests are served
DEFAULT_ARCH = "x86_64"  # template.yaml's Architecture default (arm64's lower price changes no ranking)
TYPICAL_BATCH = 32  # rows in a batched request; the benchmark's many-instances request has 32
REQUESTS_PER_CONTAINER = 1000  # a container's cold start (its model download) is spread over this many
# A model's download at a cold start: 50 MB/s, the low end of what one Lambda function reads from S3 in
# the same region (not measured here: the embedded moto server is not S3). Low on purpose: the download
# is paid by every cold start, and a slower assumed network only weighs size more.
S3_BYTES_PER_S = 50e6


def billed_ms(duration_ms: float) -> int:
    """Lambda bills duration rounded up to the next millisecond (at least 1 ms)."""
    # Rounded to a nanosecond first, so that 2.0000000001 (float noise of a scaled 2 ms) bills 2 ms, not 3.
    return max(1, math.ceil(round(duration_ms, 6)))


def at_memory_ms(measured_ms: float, memory_mb: int) -> float:
    """The measured one-thread latency at ``memory_mb``, assuming CPU-bound work: below one vCPU
    (MB_PER_VCPU) Lambda gives a share of one, so the work takes MB_PER_VCPU / memory_mb as long."""
    return measured_ms * max(1.0, MB_PER_VCPU / memory_mb)


def gb_seconds_usd(duration_ms: float, memory_mb: int, arch: str) -> float:
    """Lambda's duration charge for ``duration_ms`` at ``memory_mb`` (1,024 MB = 1 GB), not rounded."""
    return duration_ms / 1000 * memory_mb / 1024 * GB_SECOND_USD[arch]


def duration_usd(duration_ms: float, memory_mb: int, arch: str) -> float:
    """What Lambda charges for one invocation's billed duration at ``memory_mb``."""
    return gb_seconds_usd(billed_ms(duration_ms), memory_mb, arch)


def per_million_requests_usd(duration_ms: float, memory_mb: int, arch: str) -> float:
    """A million warm requests of ``duration_ms`` each: duration plus Lambda's request charge."""
    return MILLION * (duration_usd(duration_ms, memory_mb, arch) + LAMBDA_REQUEST_USD)


def cold_start_per_million_usd(cold_ms: float, memory_mb: int, arch: str, requests: int) -> float:
    """A cold start's duration (billed, INIT included) spread over the ``requests`` its container serves."""
    return MILLION * duration_usd(cold_ms, memory_mb, arch) / requests


def download_ms(size_bytes: int) -> float:
    """The model file's download at a cold start, at the assumed S3_BYTES_PER_S."""
    return 1000 * size_bytes / S3_BYTES_PER_S


def candidate_usd_per_million(
    latency_ms: float, batch_latency_ms: float, size_bytes: int, memory_mb: int, arch: str = DEFAULT_ARCH
) -> float:
    """A candidate's expected Lambda duration cost per million requests: its measured one-thread
    ``session.run`` at batch 1 and at TYPICAL_BATCH (a request as likely to carry one row as a batch),
    each scaled to ``memory_mb`` by :func:`at_memory_ms`, plus its download spread over the
    REQUESTS_PER_CONTAINER requests of a container (waiting on S3 is billed too, unscaled).

    Not rounded up to the millisecond: what the handler adds around ``session.run`` varies from request
    to request, so each extra fraction of a millisecond the model takes bills, on average, that fraction.
    The request charge is left out: the same for every candidate."""
    run_ms = (at_memory_ms(latency_ms, memory_mb) + at_memory_ms(batch_latency_ms, memory_mb)) / 2
    per_request_ms = run_ms + download_ms(size_bytes) / REQUESTS_PER_CONTAINER
    return MILLION * gb_seconds_usd(per_request_ms, memory_mb, arch)
