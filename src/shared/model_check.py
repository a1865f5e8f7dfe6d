"""Does an ONNX graph match its manifest? Checked at publish (before a version becomes visible), before an
alias names a version, and at load.

The check runs in the onnxruntime that serves (the Lambda package's), so a model that would not
load there is refused when it is published, not on the first request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from maas_core.shared.dtypes import DTYPES
from maas_core.shared.errors import ModelIntegrityError, ModelRejected

if TYPE_CHECKING:  # the manifest module reads graphs with this one's session
    from maas_core.shared.manifest import Draft


def schema_problems(session: Any, manifest: Draft) -> list[str]:
    """Differences between the session's inputs/outputs and the manifest's, as sentences."""
    graph_inputs = {i.name: i for i in session.get_inputs()}
    graph_outputs = {o.name: o for o in session.get_outputs()}
    problems = []
    declared = {spec.graph_input: spec for spec in manifest.inputs}
    if set(declared) != set(graph_inputs):
        problems.append(f"inputs: the manifest declares {sorted(declared)}, the graph has {sorted(graph_inputs)}")
    for name, spec in declared.items():
        node = graph_inputs.get(name)
        if node is None or spec.tokenizer is not None:
            continue  # a tokenised input feeds integer ids: its dtype is the tokenizer's business
        if node.type != DTYPES[spec.dtype].ort:
            problems.append(f"inputs.{name}: the manifest says {spec.dtype}, the graph takes {node.type}")
        if isinstance(node.shape, list) and len(node.shape) != len(spec.shape):
            problems.append(f"inputs.{name}: rank {len(spec.shape)} in the manifest, {len(node.shape)} in the graph")
    for spec in manifest.outputs:
        node = graph_outputs.get(spec.name)
        if node is None:
            problems.append(f"outputs.{spec.name}: not an output of the graph (it has {sorted(graph_outputs)})")
        elif node.type.startswith("tensor(") and node.type != DTYPES[spec.dtype].ort:
            problems.append(f"outputs.{spec.name}: the manifest says {spec.dtype}, the graph gives {node.type}")
    return problems


def check_session(session: Any, manifest: Draft) -> None:
    """At load: a graph that does not match its manifest is an integrity failure of the registry."""
    problems = schema_problems(session, manifest)
    if problems:
        raise ModelIntegrityError("the ONNX graph does not match its manifest", problems=problems)


def _open_session(source: bytes | str) -> Any:
    """A bare session (no graph rewrites, one thread): enough to know the model loads and read its schema."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def load_problems(source: bytes | str, manifest: Draft) -> list[str]:
    """Why this onnxruntime would not serve the model (bytes or a file path), as sentences; empty if it would."""
    import onnxruntime as ort

    try:
        session = _open_session(source)
    except Exception as exc:
        return [f"onnxruntime {ort.__version__} cannot load the model ({type(exc).__name__})"]
    return schema_problems(session, manifest)


def publishable_session(source: bytes | str) -> Any:
    """A bare session, or ModelRejected when the serving onnxruntime cannot load the model."""
    import onnxruntime as ort

    try:
        return _open_session(source)
    except Exception as exc:
        raise ModelRejected(
            f"onnxruntime {ort.__version__} cannot load the model",
            expected="an ONNX model the serving onnxruntime loads",
            received=type(exc).__name__,
        ) from None


def check_publishable(model_bytes: bytes, manifest: Draft) -> str:
    """At publish: the model must load in this onnxruntime and match the manifest; returns that version."""
    import onnxruntime as ort

    problems = schema_problems(publishable_session(model_bytes), manifest)
    if problems:
        raise ModelRejected("the ONNX graph does not match the manifest", problems=problems)
    return str(ort.__version__)
