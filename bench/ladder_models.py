"""The size ladder's models: transformer encoders of about 1, 10, 100 and 400 MB fp32 and their int8 forms.

Each rung is ``training/families/transformer.py``'s ``build`` with the sizes below, **untrained**
(Keras' initial weights, seed 0): these models measure size, load and speed, not accuracy. The 400 MB
rung is the ``base`` preset (BERT-base dimensions, ~110M parameters). Each is exported as the
training job exports (``training.export.export_onnx``, then ``check_parity`` against Keras on a few
rows) and quantised with ``training.compress.quantize_int8`` (onnxruntime's dynamic int8 of MatMul/Gemm,
the job's ``int8-dynamic`` candidate). Beside each file goes the manifest the job would write, with a
WordPiece tokenizer learnt from the bundled reviews, so the handler serves raw text.

The export runs in a child process (``python -m bench.ladder_models RUNG FOLDER``: TensorFlow's memory
is returned when it exits, and one export runs at a time) and is cached under
``.maas/bench-large/<rung>-<key>``; the key covers the sizes, the family, export and compression code
and the framework versions, so a rerun reuses the files and a change to any of them exports again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import ROOT, say

CACHE = ROOT / ".maas" / "bench-large"
SEQUENCE_LENGTH = 128  # every rung takes 128 token ids: the serving figures' 128-token request
FORMS = ("fp32", "int8")
FRAMEWORKS = ("tensorflow-cpu", "keras", "tf2onnx", "onnx", "onnxruntime", "numpy")
CODE = ("training/families/transformer.py", "training/export.py", "training/compress.py", "training/models.py")


@dataclass(frozen=True)
class Rung:
    name: str
    layers: int
    hidden_size: int
    heads: int
    feed_forward_size: int
    vocabulary_size: int

    def parameters(self) -> int:
        """Weights and biases (embeddings, blocks, pooler; the 3-class head's few are left out)."""
        h, f = self.hidden_size, self.feed_forward_size
        block = 4 * (h * h + h) + (h * f + f) + (f * h + h) + 4 * h
        return (self.vocabulary_size + SEQUENCE_LENGTH) * h + 2 * h + self.layers * block + h * h + h


RUNGS = (
    Rung("1mb", layers=2, hidden_size=64, heads=2, feed_forward_size=256, vocabulary_size=2000),
    Rung("10mb", layers=2, hidden_size=256, heads=4, feed_forward_size=1024, vocabulary_size=4000),
    Rung("100mb", layers=6, hidden_size=512, heads=8, feed_forward_size=2048, vocabulary_size=16000),
    # BERT-base (the transformer family's ``base`` preset): the ~110M-parameter model of the goals.
    Rung("400mb", layers=12, hidden_size=768, heads=12, feed_forward_size=3072, vocabulary_size=30522),
)
BASE = "400mb"


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def cache_key(rung: Rung) -> str:
    digest = hashlib.sha256(json.dumps(asdict(rung), sort_keys=True).encode())
    digest.update(str(SEQUENCE_LENGTH).encode())
    for path in CODE:
        digest.update(path.encode() + (ROOT / path).read_bytes())
    for dist in FRAMEWORKS:
        digest.update(f"{dist}={_version(dist)}".encode())
    return digest.hexdigest()[:16]


def files(folder: Path, form: str) -> tuple[Path, Path]:
    """The model and its manifest draft of one form in a rung's folder."""
    return folder / f"{form}.onnx", folder / f"{form}.manifest.json"


def _shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def exported(rung: Rung) -> Path:
    """The rung's folder with both forms, from the cache or from a fresh export in a child process."""
    folder = CACHE / f"{rung.name}-{cache_key(rung)}"
    if (folder / "done").exists():
        say(f"   {rung.name}: reusing {_shown(folder)}")
        return folder
    for stale in CACHE.glob(f"{rung.name}-*"):  # an earlier key's files: hundreds of MB no run reads again
        shutil.rmtree(stale, ignore_errors=True)
    folder.mkdir(parents=True)
    log = folder / "export.log"
    say(f"   {rung.name}: exporting ({rung.parameters():,} parameters); log in {_shown(log)}")
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    with log.open("w") as handle:
        code = subprocess.call(
            [sys.executable, "-m", "bench.ladder_models", rung.name, str(folder)],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    if code != 0:
        raise RuntimeError(f"exporting {rung.name} failed (exit {code}); the end of {log}:\n{log.read_text()[-2000:]}")
    (folder / "done").write_text("")
    return folder


def _export(rung: Rung, folder: Path) -> None:
    """Build, export, check and quantise one rung; write both forms and their manifest drafts."""
    import numpy as np

    from training import compress, export, manifest, models
    from training.families import TEXT_INPUT
    from training.families.base import BuildInputs
    from training.families.transformer import ARCHITECTURE, FAMILY, build
    from training.text_data import generate_reviews
    from training.vocabulary import learn_tokenizer

    reviews = generate_reviews()
    labels = sorted({label for _, label in reviews})
    tokenizer = learn_tokenizer(
        FAMILY.tokenizer,
        [t for t, _ in reviews],
        max_tokens=rung.vocabulary_size,
        sequence_length=SEQUENCE_LENGTH,
        graph_input=FAMILY.input_name,
    )
    x = tokenizer.encode([t for t, _ in reviews[:8]])
    models.set_seed(0)
    sizes = {k: getattr(rung, k) for k in ARCHITECTURE}
    given = BuildInputs(x, np.zeros(len(x), np.int64), len(labels), FAMILY.learning_rate, rung.vocabulary_size, sizes)
    model = build(given)
    print(f"{rung.name}: {model.count_params():,} parameters", flush=True)
    fp32, _ = files(folder, "fp32")
    export.export_onnx(model, fp32, input_name=FAMILY.input_name, output_name=FAMILY.output_name, input_dtype="int64")
    parity = export.check_parity(model, fp32, x)
    int8, _ = files(folder, "int8")
    compress.quantize_int8(fp32, int8)
    for form in FORMS:
        path, draft_path = files(folder, form)
        draft = manifest.build_manifest(
            onnx_path=path,
            labels=labels,
            text_input=(TEXT_INPUT, tokenizer.to_manifest()),
            preprocessing=FAMILY.preprocessing(0, None),
            compression={"method": "fp32" if form == "fp32" else "int8-dynamic", "candidates": []},
            metrics={"parity_max_abs_diff": parity, "trained": False},
            training_job={
                "id": f"bench-ladder-{rung.name}",
                "note": "untrained: Keras' initial weights, for size, load and speed only",
                "hyperparameters": {"family": "transformer", **asdict(rung), "sequence_length": SEQUENCE_LENGTH},
            },
            framework=manifest.framework_versions(export.OPSET),
            task=FAMILY.task,
        )
        draft_path.write_text(json.dumps(draft.to_json(), indent=1) + "\n")
        print(f"{form}: {path.stat().st_size:,} bytes", flush=True)


def rung_named(name: str) -> Rung:
    found = [r for r in RUNGS if r.name == name]
    if not found:
        raise SystemExit(f"rung must be one of {', '.join(r.name for r in RUNGS)}; got {name!r}")
    return found[0]


def draft_of(folder: Path, form: str) -> dict[str, Any]:
    return dict(json.loads(files(folder, form)[1].read_text()))


if __name__ == "__main__":
    _export(rung_named(sys.argv[1]), Path(sys.argv[2]))
