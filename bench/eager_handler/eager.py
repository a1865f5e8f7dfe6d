"""The work ApiFunction leaves to the first request that needs it, as named steps (bench: lazy vs eager).

The handler creates its S3 client (botocore) on first use (``shared.aws.s3_client``), imports ONNX Runtime
and builds its ``SessionOptions`` when a model is first loaded (``shared.model_cache.build_session``),
and Powertools builds a route's request-validation models (pydantic) on the route's first request.
``app.py`` beside this file does every step at import, after the handler's; ``bench.child items lazy`` times the
same steps right after the handler's import, which is what the first prediction pays for them.
Standard library only at import: under the Lambda runtime interface emulator this folder is /var/task.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

PREDICT = ("POST", "/models/<name>/predict")

LABELS = {
    "s3_client_made": "S3 client (`shared.aws.s3_client()`: botocore, the S3 model)",
    "onnxruntime": "`import onnxruntime` + `SessionOptions()`",
    "route_models": "request-validation models (Powertools + pydantic): eagerly every route, lazily the one asked",
}


def s3_client_made() -> None:
    from maas_core.shared.aws import s3_client

    s3_client()


def onnxruntime_session_options() -> None:
    import onnxruntime

    onnxruntime.SessionOptions()


def route_models(api: Any, only: tuple[str, str] | None = None) -> int:
    """Build what Powertools caches on each route at its first request: its dependant and body models."""
    built = 0
    for route in [*api._static_routes, *api._dynamic_routes]:
        if only is None or (route.method, route.path) == only:
            _ = route.dependant, route.body_field
            built += 1
    return built


def timed(step: Callable[[], Any]) -> float:
    started = time.perf_counter()
    step()
    return (time.perf_counter() - started) * 1000
