"""Large models published split: the graph in ``model.onnx``, every weight beside it in ``model.onnx.data``
(ONNX external data; ARCHITECTURE.md, "Registry layout").

Why: onnxruntime builds a session from an inline model.onnx by parsing the whole protobuf and then
copying every initialiser into its tensors, about 1.5 x the file in peak memory; from a split model it
reads the weights from their own file into its tensors, 1.0 x, and builds it in half the time
(``python -m bench.loading --modes path,external``; ``maas_core.shared.sizing`` has the figures).

This is tooling (it needs ``onnx``): the training job, ``maas models publish`` and the benchmark call
:func:`publish_model_file`; serving only ever reads the two files the registry verified.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from maas_core.shared.errors import ModelRejected
from maas_core.shared.layout import DATA_FILE, MODEL_FILE
from maas_core.shared.manifest import Draft, Manifest
from maas_core.shared.registry import Registry

# Models from this size on are published split. Measured (``python -m bench.loading --sizes 1,4,8,10,16
# --modes path,path_save,external --side 512``, and the ladder's 10mb transformer; onnxruntime 1.32), the
# peak a cold load adds over the runtime: inline, with the optimised graph the model cache then saved
# (it no longer does: model_cache.build_session), 13, 22, 39 and 57 MiB at 1, 4, 10 and 16 MiB (38 MiB for
# the 10 MiB transformer); split, 11, 14, 20 and 26 MiB (18 for the transformer), built in a third to a
# half of the time. Inline without the saved graph still holds the weights twice while it builds (~1.7 x
# the file: shared.sizing), above the goal of 1.5 x the file + 120 MiB for large models; split is never
# worse, at every size. What splitting costs is one more GET of the graph, so models under
# 1 MiB (the models of `make test` and `make demo`, where the saving is 1-2 MiB) stay one object.
SPLIT_THRESHOLD_BYTES = 2**20
# Initialisers smaller than this stay in the graph (shapes, axes, scales): onnx's own default.
INLINE_TENSOR_MAX_BYTES = 1024
# onnx.save_model's options for a split model: every weight in one file, named as the registry keeps it.
SAVE_SPLIT: dict[str, Any] = {
    "save_as_external_data": True,
    "all_tensors_to_one_file": True,
    "location": DATA_FILE,
    "size_threshold": INLINE_TENSOR_MAX_BYTES,
}


def _load(model: Path | bytes, *, with_weights: bool = True) -> Any:
    import onnx

    if isinstance(model, bytes):
        return onnx.load_from_string(model)
    return onnx.load(str(model), load_external_data=with_weights)


def external_locations(model: Path | bytes) -> set[str]:
    """The files a graph's tensors name as their external data (empty: every weight is inline)."""
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    # _get_all_tensors also walks subgraphs (If/Loop bodies) and attributes, as onnx's own saver does.
    return {
        entry.value
        for tensor in _get_all_tensors(_load(model, with_weights=False))
        if uses_external_data(tensor)
        for entry in tensor.external_data
        if entry.key == "location"
    }


def save_split(model: Path | bytes, folder: Path) -> Path:
    """Write ``model`` (inline, or split already) split into ``folder``: ``model.onnx`` and every
    initialiser of at least ``INLINE_TENSOR_MAX_BYTES`` in one ``model.onnx.data``; the graph's path."""
    import onnx

    target = folder / MODEL_FILE
    onnx.save_model(_load(model), str(target), **SAVE_SPLIT)
    return target


def split_weights(model: Path | bytes) -> tuple[bytes, bytes]:
    """(graph, weights): ``model`` split as the registry stores it, the graph naming ``model.onnx.data``."""
    with tempfile.TemporaryDirectory(prefix="maas-split-") as folder:
        graph = save_split(model, Path(folder))
        return graph.read_bytes(), graph.with_name(DATA_FILE).read_bytes()


def beside_data(path: Path) -> Path | None:
    """The weights' file of an ONNX file split already (``model.onnx.data`` beside it), None for an inline
    one; ModelRejected for a graph naming any other file: nothing but that one name is ever read, so a
    location such as ``../secret`` or ``/etc/passwd`` is never followed."""
    locations = external_locations(path)
    if not locations:
        return None
    data = path.parent / DATA_FILE
    if locations != {DATA_FILE} or not data.is_file():
        raise ModelRejected(
            f"{path.name} keeps its weights outside the graph, which MaaS publishes only from one file "
            f"{DATA_FILE!r} beside it",
            expected=f"every external tensor's location {DATA_FILE!r}, present beside the graph",
            received=sorted(locations) if locations != {DATA_FILE} else f"{data} is missing",
        )
    return data


def publish_model_file(
    registry: Registry,
    name: str,
    path: Path,
    draft: Draft | dict[str, Any],
    *,
    threshold_bytes: int = SPLIT_THRESHOLD_BYTES,
    **publish: Any,
) -> Manifest:
    """Publish the ONNX file at ``path`` as a new version of ``name``: split first when it is at least
    ``threshold_bytes``, as it is when split already; ``publish`` are :meth:`Registry.publish`'s keywords
    (``version``, ``alias_on_first_publish``, ``actor``, ``limits``)."""
    path = Path(path)
    data = beside_data(path)
    if data is not None:
        return registry.publish(name, path.read_bytes(), draft, external_data=data, **publish)
    if path.stat().st_size < threshold_bytes:
        return registry.publish(name, path.read_bytes(), draft, **publish)
    with tempfile.TemporaryDirectory(prefix="maas-split-") as folder:
        graph = save_split(path, Path(folder))
        return registry.publish(name, graph.read_bytes(), draft, external_data=graph.with_name(DATA_FILE), **publish)
