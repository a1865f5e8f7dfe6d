"""Per-model example bodies for the generated OpenAPI document, taken from the manifests.

The document is open (no API key) and rebuilt from the registry, so both its size and its cost per
call are bounded: an example holds at most MAX_EXAMPLE_VALUES values (a larger model gets a
schema-only example that names its shapes), at most MAX_EXAMPLE_MODELS models get one, and the
registry is read at most once per TTL (one listing plus the model cache's alias checks, which are
conditional GETs); manifests are read once per version, since versions are immutable
(ARCHITECTURE.md, "Registry on S3").
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from maas_core.shared.dtypes import V2_DATATYPES
from maas_core.shared.errors import MaasError, RegistryUnavailable
from maas_core.shared.manifest import Manifest, TensorSpec
from maas_core.shared.model_cache import ModelCache

PREDICT_PATHS = ("/models/{name}/predict", "/models/{name}/versions/{version}/predict")
INFER_PATHS = ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer")
# 512 values keep 20 models' examples (4 request bodies each) near 1 MB of indented JSON, so the
# document and the Swagger page (which embeds it beside ~1.7 MB of its own) stay far below
# Lambda's 6 MB response limit.
MAX_EXAMPLE_VALUES = 512
MAX_EXAMPLE_MODELS = 20


def _instance_shape(spec: TensorSpec) -> list[int]:
    return [d or 1 for d in spec.shape[1:]]


def _zeros(shape: list[int], zero: Any) -> Any:
    value = zero
    for dim in reversed(shape):
        value = [value] * dim
    return value


def example_bodies(manifest: Manifest) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """One instance of zeros in the model's shapes, as a TF Serving body and a KServe v2 body; None
    when one instance holds more than MAX_EXAMPLE_VALUES values."""
    specs = manifest.inputs
    if sum(math.prod(_instance_shape(s)) for s in specs) > MAX_EXAMPLE_VALUES:
        return None
    zeros = {s.name: _zeros(_instance_shape(s), "" if s.dtype == "string" else 0.0) for s in specs}
    predict = {"instances": [zeros[specs[0].name] if len(specs) == 1 else zeros]}
    infer = {
        "inputs": [
            {
                "name": s.name,
                "shape": [1, *_instance_shape(s)],
                "datatype": V2_DATATYPES[s.dtype],
                "data": ["" if s.dtype == "string" else 0.0] * math.prod(_instance_shape(s)),
            }
            for s in specs
        ]
    }
    return predict, infer


def _shapes(manifest: Manifest) -> str:
    return ", ".join(f"{s.name}: {s.dtype} {list(s.shape)}" for s in manifest.inputs)


def add_model_examples(schema: Any, manifests: list[Manifest]) -> Any:
    """Attach examples to the predict and infer request bodies; the document stays valid without them."""
    from aws_lambda_powertools.event_handler.openapi.models import Example

    examples: list[tuple[str, str, tuple[dict[str, Any], dict[str, Any]] | None, str]] = [
        (m.name, f"{m.name} {m.version}", example_bodies(m), _shapes(m)) for m in manifests
    ]
    for paths, pick in ((PREDICT_PATHS, 0), (INFER_PATHS, 1)):
        for path in paths:
            item = (schema.paths or {}).get(path)
            body = item.post.requestBody if item and item.post else None
            media = body.content.get("application/json") if body is not None else None
            if media is None:
                continue
            media.examples = {
                name: (
                    Example(summary=summary, value=bodies[pick])
                    if bodies
                    else Example(
                        summary=summary,
                        description=f"inputs {shapes}: over {MAX_EXAMPLE_VALUES} values, too large to show",
                    )
                )
                for name, summary, bodies, shapes in examples
            }
    return schema


@dataclass
class PublishedModels:
    """The production version and manifest of each published model, re-read at most once per TTL."""

    ttl_seconds: float
    state: tuple[tuple[str, str], ...] = ()
    manifests: dict[tuple[str, str], Manifest] = field(default_factory=dict)
    _source: ModelCache | None = None
    _read_at: float = -math.inf

    def current(self, models: ModelCache) -> tuple[tuple[tuple[str, str], ...], list[Manifest]]:
        """((name, version) of each model, their manifests); empty while the registry cannot be read."""
        now = time.monotonic()
        if models is not self._source or now - self._read_at >= self.ttl_seconds:
            self._source, self._read_at = models, now
            self.state = self._read(models)
            self.manifests = {key: self.manifests[key] for key in self.state}
        return self.state, [self.manifests[key] for key in self.state]

    def _read(self, models: ModelCache) -> tuple[tuple[str, str], ...]:
        registry, state = models.registry, []
        try:
            for name in registry.list_models()[:MAX_EXAMPLE_MODELS]:
                try:
                    key = (name, models.resolve(name))
                    if key not in self.manifests:
                        self.manifests[key] = registry.read_manifest(*key)
                except RegistryUnavailable:
                    raise
                except MaasError:  # no production alias, or a broken manifest: no example for it
                    continue
                state.append(key)
        except RegistryUnavailable:
            return ()  # the plain document until the next read
        return tuple(state)
