"""Resume after a spot interruption: SageMaker syncs /opt/ml/checkpoints with S3 and restores it
into the restarted job; the job saves its model there after every epoch and starts from the last one.

Checkpointing is on only when the folder exists (SageMaker creates it when the job has a
CheckpointConfig), and a checkpoint is used only by the same job configuration (fingerprint).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import keras

MODEL_FILE = "checkpoint.keras"
STATE_FILE = "checkpoint.json"


def checkpoint_dir(root: Path) -> Path | None:
    path = Path(os.environ.get("MAAS_CHECKPOINT_DIR", root / "checkpoints"))
    return path if path.is_dir() else None


def fingerprint(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def restore(folder: Path | None, expected: str) -> tuple[Any, int]:
    """(model, epochs already done) from a checkpoint of this configuration, else (None, 0)."""
    if folder is None or not (folder / STATE_FILE).exists() or not (folder / MODEL_FILE).exists():
        return None, 0
    state = json.loads((folder / STATE_FILE).read_text())
    if state.get("fingerprint") != expected:
        print(f"checkpoint in {folder} belongs to another configuration; starting afresh", flush=True)
        return None, 0
    model = keras.models.load_model(folder / MODEL_FILE)
    print(f"resuming from the checkpoint after epoch {state['epoch']}", flush=True)
    return model, int(state["epoch"])


class SaveEveryEpoch(keras.callbacks.Callback):
    """Writes the model and the epoch atomically, so an interruption never leaves half a checkpoint."""

    def __init__(self, folder: Path, config_fingerprint: str) -> None:
        super().__init__()
        self.folder = folder
        self.fingerprint = config_fingerprint

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        partial = self.folder / f".{MODEL_FILE}"
        self.model.save(partial)
        partial.replace(self.folder / MODEL_FILE)
        state = self.folder / f".{STATE_FILE}"
        state.write_text(json.dumps({"epoch": epoch + 1, "fingerprint": self.fingerprint}))
        state.replace(self.folder / STATE_FILE)
