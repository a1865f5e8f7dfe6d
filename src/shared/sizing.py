"""What a model needs of the function that serves it, from the size of its files, and whether it fits.

The figures are measured, not guessed (ARCHITECTURE.md, Serving: sizing). Memory: the function's own
resident memory before any model, plus the peak a cold load adds, which grows with the files (the
session is built from the files on /tmp, never from a Python ``bytes``). An inline model.onnx holds its
weights about twice at the peak, once in onnxruntime's parsed protobuf and once in its tensors; a split
one (the weights in model.onnx.data beside the graph: ARCHITECTURE.md, "Registry layout") about once,
as onnxruntime reads them from their own file into its tensors. Storage: the verified files in /tmp.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from maas_core.shared.errors import ModelTooLarge

MIB = 2**20
# Lambda allocates CPU in proportion to memory: one full vCPU per 1,769 MB, up to 6. Here, where the training
# job (training/cost.py) can read it without the serving side's imports.
MB_PER_VCPU = 1769
MAX_VCPUS = 6
# Peak RSS a cold load adds, per byte of model.onnx and fixed. Measured with
#   .venv/bin/python -m bench.loading --sizes 25,100,400 --rounds 3 --modes path
# (MatMul chains of 24, 100 and 400 MiB; fits of 1.50 x size + 5 MiB and 1.69 x size - 27 MiB on two
# runs, a shared 2-core x86_64 machine, onnxruntime 1.32): the larger slope, and a fixed part that
# covers the 24 MiB model's 50 MiB.
LOAD_RSS_PER_BYTE = 1.7
LOAD_RSS_FIXED_MIB = 25
# The same for a split model (its weights in model.onnx.data), per byte of graph and weights together.
# Measured with
#   .venv/bin/python -m bench.loading --sizes 25,100,400 --rounds 3 --modes path,external
# (the same chains saved split by training.weights.save_split; peaks of 38, 114 and 414 MiB, fits of
# 1.002 x size + 13.5 MiB and 1.002 x size + 13.4 MiB on two runs, the same machine and onnxruntime; the
# inline form's were 50, 142-146 and 610-614 MiB in those runs): the slope with 5% headroom, and a fixed
# part that covers the 24 MiB model's 38 MiB.
SPLIT_LOAD_RSS_PER_BYTE = 1.05
SPLIT_LOAD_RSS_FIXED_MIB = 15
# The function before any model: python3.12 with botocore, Powertools, numpy and onnxruntime imported and
# the API handler loaded (115 MiB measured the same way), rounded up.
RUNTIME_RSS_MIB = 128
# /tmp beside the model files: downloads of the admin check, batch parts, the runtime's own files.
STORAGE_RESERVE_MIB = 64


@dataclass(frozen=True)
class Needs:
    """The memory and /tmp (both MiB, as Lambda counts its MB) a function needs to serve one model."""

    memory_mb: int
    storage_mb: int

    @classmethod
    def of(cls, size_bytes: int, external_bytes: int = 0) -> Needs:
        """The needs of a model.onnx of ``size_bytes`` and, when split, of its weights' file (``external_bytes``)."""
        total = size_bytes + external_bytes
        per_byte, fixed = (
            (SPLIT_LOAD_RSS_PER_BYTE, SPLIT_LOAD_RSS_FIXED_MIB)
            if external_bytes
            else (LOAD_RSS_PER_BYTE, LOAD_RSS_FIXED_MIB)
        )
        peak_mib = RUNTIME_RSS_MIB + fixed + per_byte * total / MIB
        return cls(math.ceil(peak_mib), math.ceil(total / MIB) + STORAGE_RESERVE_MIB)

    def to_json(self) -> dict[str, int]:
        return {"memory_mb": self.memory_mb, "storage_mb": self.storage_mb}


@dataclass(frozen=True)
class Limits:
    """A function's MemorySize and EphemeralStorage (MiB)."""

    memory_mb: int
    storage_mb: int

    @classmethod
    def of_this_function(cls) -> Limits | None:
        """This Lambda function's limits (its memory, and EPHEMERAL_STORAGE_MB from its template, else the
        size of /tmp); None outside Lambda, where nothing is enforced."""
        memory = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        if not memory:
            return None
        return cls(int(memory), storage_mib())

    def refusal(self, needs: Needs) -> str | None:
        """Why a model with these needs cannot be served within these limits; None when it can."""
        short = [
            f"{what} {need} MB (this function has {limit} MB)"
            for what, need, limit in (
                ("memory", needs.memory_mb, self.memory_mb),
                ("ephemeral storage", needs.storage_mb, self.storage_mb),
            )
            if need > limit
        ]
        return ", ".join(short) or None

    def to_json(self) -> dict[str, int]:
        return {"memory_mb": self.memory_mb, "storage_mb": self.storage_mb}


def storage_mib(folder: str = "/tmp") -> int:  # noqa: S108 - Lambda's one writable folder
    """The function's ephemeral storage: EPHEMERAL_STORAGE_MB (the template passes its EphemeralStorage),
    else the size of the filesystem under ``folder``."""
    configured = os.environ.get("EPHEMERAL_STORAGE_MB")
    if configured:
        return int(configured)
    try:
        stats = os.statvfs(folder)
    except OSError:
        return 512  # Lambda's default
    return stats.f_frsize * stats.f_blocks // MIB


def check_fits(
    size_bytes: int,
    limits: Limits,
    *,
    model: str,
    error: type[ModelTooLarge] = ModelTooLarge,
    external_bytes: int = 0,
) -> Needs:
    """The needs of a model of ``size_bytes`` (and ``external_bytes`` of split weights), or ``error`` naming its
    needs and the limits (422 at publish; ``ModelTooLargeHere``, 507, when a request meets a function
    configured too small for it)."""
    needs = Needs.of(size_bytes, external_bytes)
    refusal = limits.refusal(needs)
    if refusal:
        total = size_bytes + external_bytes
        raise error(
            f"model {model!r} ({total} bytes) does not fit the function that serves it: it needs {refusal}; "
            "give the function more MemorySize / EphemeralStorage, or publish a smaller (quantised) model",
            model=model,
            size_bytes=total,
            needs=needs.to_json(),
            limits=limits.to_json(),
        )
    return needs
