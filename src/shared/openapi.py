"""Per-model example bodies for the generated OpenAPI document, taken from the manifests."""

from __future__ import annotations

import math
from typing import Any

from shared.errors import MaasError
from shared.registry import Registry

PREDICT_PATHS = ("/models/{name}/predict", "/models/{name}/versions/{version}/predict")
INFER_PATHS = ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer")


def _zeros(shape: list[int | None]) -> Any:
    value: Any = 0.0
    for dim in reversed(shape):
        value = [value] * (dim or 1)
    return value


def example_bodies(manifest: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """One instance of zeros in the model's shapes: a TF Serving body and a KServe v2 body."""
    from shared.kserve import V2_DATATYPES

    specs = manifest["inputs"]
    if len(specs) == 1:
        predict: dict[str, Any] = {"instances": [_zeros(specs[0]["shape"][1:])]}
    else:
        predict = {"instances": [{s["name"]: _zeros(s["shape"][1:]) for s in specs}]}
    infer = {
        "inputs": [
            {
                "name": s["name"],
                "shape": [1, *[d or 1 for d in s["shape"][1:]]],
                "datatype": V2_DATATYPES[s["dtype"]],
                "data": [0.0] * math.prod(d or 1 for d in s["shape"][1:]),
            }
            for s in specs
        ]
    }
    return predict, infer


def add_model_examples(schema: Any, registry: Registry, limit: int = 20) -> Any:
    """Attach examples to the predict and infer request bodies; the document stays valid without them."""
    from aws_lambda_powertools.event_handler.openapi.models import Example

    try:
        manifests = [registry.read_manifest(n, registry.resolve(n)) for n in registry.list_models()[:limit]]
    except MaasError:
        return schema  # the registry is down or a model is broken: serve the plain document
    for paths, pick in ((PREDICT_PATHS, 0), (INFER_PATHS, 1)):
        for path in paths:
            item = (schema.paths or {}).get(path)
            body = item.post.requestBody if item and item.post else None
            media = body.content.get("application/json") if body is not None else None
            if media is None:
                continue
            media.examples = {
                m["name"]: Example(summary=f"{m['name']} {m['version']}", value=example_bodies(m)[pick])
                for m in manifests
            }
    return schema
