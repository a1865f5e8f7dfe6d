"""Each model family, as a user runs it: `maas train local --family F --data <channel>` publishes into
the running local stack, and the local API answers rows the job never saw."""

from __future__ import annotations

import csv
import json
import subprocess

import numpy as np
import pytest

from tests_support import MAAS, http

pytestmark = [pytest.mark.integration, pytest.mark.training]

HELD_OUT = 30


def split_csv(path, held_out: int = HELD_OUT) -> list[dict]:
    """Keep ``held_out`` rows of a channel CSV back from training; return them as dicts."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    fields = list(rows[0])
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows[held_out:])
    return rows[:held_out]


def train(stack, family: str, name: str, data, epochs: int) -> None:
    result = subprocess.run(
        [*MAAS, "train", "local", "--family", family, "--data", str(data), "--name", name, "--epochs", str(epochs)],
        env=stack["env"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def predict(stack, name: str, instances: list) -> list[dict]:
    status, body = http("POST", f"{stack['url']}/models/{name}/predict", json.dumps({"instances": instances}).encode())
    assert status == 200, body
    return body["predictions"]


def test_image_family(stack, tmp_path):
    from maas.demo import split_digits

    images, labels = split_digits(tmp_path / "digits", holdout=HELD_OUT, seed=3)
    train(stack, "image", "fam-digits", tmp_path / "digits", epochs=8)
    predictions = predict(stack, "fam-digits", images.tolist())
    assert np.mean([p["label"] == str(y) for p, y in zip(predictions, labels, strict=True)]) >= 0.85


@pytest.mark.parametrize(
    ("family", "dataset"), [("tabular", "breast_cancer"), ("logistic", "breast_cancer"), ("tabular", "wine")]
)
def test_classifiers_on_raw_csv_features(stack, tmp_path, family, dataset):
    from training.data import write_tabular_channel

    write_tabular_channel(tmp_path / "channel", dataset)
    held = split_csv(tmp_path / "channel" / f"{dataset}.csv")
    name = f"fam-{family}-{dataset.replace('_', '-')}"
    train(stack, family, name, tmp_path / "channel", epochs=15)
    features = [[float(v) for k, v in row.items() if k != "label"] for row in held]
    predictions = predict(stack, name, features)
    assert np.mean([p["label"] == row["label"] for p, row in zip(predictions, held, strict=True)]) >= 0.85


def test_linear_regression_beats_the_mean(stack, tmp_path):
    from training.data import write_tabular_channel

    write_tabular_channel(tmp_path / "channel", "diabetes")
    held = split_csv(tmp_path / "channel" / "diabetes.csv")
    train(stack, "linear", "fam-diabetes", tmp_path / "channel", epochs=15)
    targets = np.asarray([float(row["label"]) for row in held])
    predictions = predict(stack, "fam-diabetes", [[float(v) for k, v in row.items() if k != "label"] for row in held])
    rmse = float(np.sqrt(np.mean((np.asarray([p["prediction"][0] for p in predictions]) - targets) ** 2)))
    assert rmse < 0.9 * float(np.std(targets)), rmse


@pytest.mark.parametrize(("family", "epochs"), [("text", 8), ("text-rnn", 4)])
def test_text_families_take_raw_strings(stack, tmp_path, family, epochs):
    from training.text_data import write_text_channel

    write_text_channel(tmp_path / "channel", rows=1500, seed=5)
    held = split_csv(tmp_path / "channel" / "reviews.csv")
    train(stack, family, f"fam-{family}", tmp_path / "channel", epochs=epochs)
    predictions = predict(stack, f"fam-{family}", [row["text"] for row in held])
    assert np.mean([p["label"] == row["label"] for p, row in zip(predictions, held, strict=True)]) >= 0.8
