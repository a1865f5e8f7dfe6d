"""Spot interruptions: a job restarted with its checkpoint folder restored resumes after the last epoch."""

import json

import pytest
from test_job import clean_env, fake_opt_ml

from training.job import main

pytestmark = pytest.mark.training


def epoch_lines(text: str) -> list[str]:
    return [line.split()[0] for line in text.splitlines() if line.startswith("epoch=")]


def test_a_restarted_job_resumes_from_its_last_checkpoint(tmp_path, monkeypatch, capsys):
    clean_env(monkeypatch)
    root = fake_opt_ml(tmp_path / "opt_ml", {"epochs": 3, "compression": "int8-dynamic"})
    saved = root / "checkpoints"
    saved.mkdir()  # SageMaker creates it when the job has a CheckpointConfig
    assert main([], root=root) == 0
    assert json.loads((saved / "checkpoint.json").read_text())["epoch"] == 3
    assert epoch_lines(capsys.readouterr().out) == ["epoch=1", "epoch=2", "epoch=3"]

    state = json.loads((saved / "checkpoint.json").read_text())
    (saved / "checkpoint.json").write_text(json.dumps({**state, "epoch": 1}))  # as if interrupted after epoch 1
    assert main([], root=root) == 0
    out = capsys.readouterr().out
    assert "resuming from the checkpoint after epoch 1" in out
    assert epoch_lines(out) == ["epoch=2", "epoch=3"]


def test_a_checkpoint_of_another_configuration_is_not_used(tmp_path, monkeypatch, capsys):
    clean_env(monkeypatch)
    root = fake_opt_ml(tmp_path / "opt_ml", {"epochs": 1, "compression": "int8-dynamic"})
    (root / "checkpoints").mkdir()
    assert main([], root=root) == 0
    (root / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({"epochs": "2", "compression": '"int8-dynamic"', "learning_rate": "0.001"})
    )
    capsys.readouterr()
    assert main([], root=root) == 0
    out = capsys.readouterr().out
    assert "belongs to another configuration" in out and epoch_lines(out) == ["epoch=1", "epoch=2"]
