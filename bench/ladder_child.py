"""The size ladder's in-process measurements, each in a fresh child: ``python -m bench.ladder_child <what> ... OUT``.

- ``build MODEL``: the session built from a local file as a cold ApiFunction builds it
  (``model_cache.build_session`` with the function's vCPU threads), its seconds and the process's peak
  RSS over its baseline (onnxruntime and numpy imported);
- ``latency MODULE EVENTS CALLS REPEATS``: warm handler latency of text requests against a bare
  ``session.run`` on the handler's own session, with the ids the handler's tokenizer gives
  (bench/child.py's ``latency`` takes float instances, so it cannot time a text model).
"""

from __future__ import annotations

import functools
import importlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.child import Context, _handler, _interleaved
from bench.common import vm_hwm_mib


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def build(model: str) -> dict[str, Any]:
    import numpy  # noqa: F401 - in the baseline, as in the handler before its first model
    import onnxruntime  # noqa: F401

    from maas_core.shared.model_cache import build_session, lambda_vcpus

    base = _rss_mib()
    started = time.perf_counter()
    session = build_session(model, threads=lambda_vcpus())
    seconds = time.perf_counter() - started
    del session
    return {"build_s": seconds, "peak_rss_over_baseline_mib": vm_hwm_mib() - base, "baseline_mib": base}


def latency(module: str, events_path: str, calls: int, repeats: int) -> dict[str, Any]:
    """``events_path`` holds {label: event} with raw-text instances; each is timed through the handler
    and bare on the same session with the handler's tokenizer's ids."""
    events = json.loads(Path(events_path).read_text())
    handler = _handler(module)
    app = importlib.import_module(module)
    context = Context()
    targets: dict[str, Callable[[], Any]] = {}
    instances = {}
    for label, event in events.items():
        response = handler(event, context)
        if response.get("statusCode") != 200:
            raise RuntimeError(f"{label}: {response.get('statusCode')} {str(response.get('body'))[:300]}")
        loaded = app.models.get(event["pathParameters"]["name"])
        texts = json.loads(event["body"])["instances"]
        ids = loaded.tokenizer(loaded.manifest.inputs[0]).encode(texts)  # the handler's own tokenizer
        session = loaded.session
        targets[f"{label}/bare"] = functools.partial(session.run, None, {session.get_inputs()[0].name: ids})
        targets[f"{label}/handler"] = functools.partial(handler, event, context)
        instances[label] = len(texts)
    figures = _interleaved(targets, calls, repeats)
    return {
        label: {"handler": figures[f"{label}/handler"], "bare": figures[f"{label}/bare"], "instances": count}
        for label, count in instances.items()
    }


def main(argv: list[str]) -> int:
    what, *args, out = argv
    if what == "build":
        result = build(args[0])
    elif what == "latency":
        result = latency(args[0], args[1], int(args[2]), int(args[3]))
    else:
        raise SystemExit(f"unknown measurement {what!r}")
    Path(out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
