"""schemathesis hooks for test_fuzz.py (loaded through SCHEMATHESIS_HOOKS by the `st run` it starts).

The OpenAPI document cannot say which model names exist, so a fuzzer left alone would only ever ask
for models that do not: 404 after 404, and never a tensor through a model. Path parameters named
`name` and `version` are drawn from the generated value and the published models and versions
(MAAS_FUZZ_MODELS, MAAS_FUZZ_VERSIONS), so the generated bodies reach the input checks and ONNX Runtime.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from hypothesis import strategies as st

MODELS = [m for m in os.environ.get("MAAS_FUZZ_MODELS", "").split(",") if m]
VERSIONS = [v for v in os.environ.get("MAAS_FUZZ_VERSIONS", "").split(",") if v]


@schemathesis.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
    if not path_parameters:
        return st.just(path_parameters)
    choices = {}
    for name, known in (("name", MODELS), ("version", VERSIONS)):
        if name in path_parameters and known:
            # Known values first: the examples phase and shrinking take the first choice.
            choices[name] = st.sampled_from([*known, path_parameters[name]])
    if not choices:
        return st.just(path_parameters)
    return st.fixed_dictionaries(choices).map(lambda drawn: {**path_parameters, **drawn})
