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


def test_transformer_answers_raw_text_as_keras_does(stack, tmp_path):
    """The `tiny` transformer through the local stack: TF Serving body, v2 BYTES and a JSON Lines batch
    file give the labels and probabilities Keras gives the same strings (the fp32 export is published
    here, so they are the same to the export's parity; compressed candidates are gated in training)."""
    import keras
    from test_batch_local import wait_for

    from maas.train_local import run_job
    from maas_core.shared.text import WordTokenizer
    from training.text_data import write_text_channel

    name = "fam-transformer"
    write_text_channel(tmp_path / "channel", rows=1500, seed=5)
    held = split_csv(tmp_path / "channel" / "reviews.csv")
    texts = [row["text"] for row in held] + ["Café-style KETTLE: superb!!", "", "x" * 5000]
    hyperparameters = {
        "family": "transformer",
        "preset": "tiny",
        "epochs": 4,
        "compression": "fp32",
        "model_name": name,
    }
    env = {**stack["s3"].client_env(), "MAAS_MODEL_BUCKET": stack["bucket"]}
    assert run_job(tmp_path / "opt_ml", tmp_path / "channel", hyperparameters, env) == 0

    manifest = stack["registry"].read_manifest(name, stack["registry"].resolve(name, "production"))
    tokenizer = WordTokenizer.from_manifest(manifest.inputs[0].tokenizer)
    expected = keras.saving.load_model(tmp_path / "opt_ml" / "model" / "model.keras").predict(
        tokenizer.encode(texts), verbose=0
    )
    labels = [manifest.labels[i] for i in expected.argmax(1)]

    predictions = predict(stack, name, texts)
    assert [p["label"] for p in predictions] == labels
    assert np.allclose([p["probabilities"] for p in predictions], expected, atol=1e-4)
    assert np.mean([label == row["label"] for label, row in zip(labels, held, strict=False)]) >= 0.8

    infer = {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}
    status, body = http("POST", f"{stack['url']}/v2/models/{name}/infer", json.dumps(infer).encode())
    assert status == 200, body
    (output,) = body["outputs"]
    assert np.allclose(np.reshape(output["data"], output["shape"]), expected, atol=1e-4)

    s3, bucket = stack["s3"].client(), stack["bucket"]
    key = f"batch/in/{name}/production/reviews.jsonl"
    lines = "".join(json.dumps({"id": i, "instances": [t]}) + "\n" for i, t in enumerate(texts))
    etag = s3.put_object(Bucket=bucket, Key=key, Body=lines.encode())["ETag"].strip('"')
    summary = wait_for(s3, bucket, f"batch/out/{name}/production/reviews.jsonl/{etag}/summary.json", timeout=180)
    assert (summary["rows"], summary["scored"], summary["failed"]) == (len(texts), len(texts), 0)
    results = [
        json.loads(line)
        for uri in summary["results"]
        for line in s3.get_object(Bucket=bucket, Key=uri.removeprefix(f"s3://{bucket}/"))["Body"].read().splitlines()
    ]
    assert [r["prediction"]["label"] for r in sorted(results, key=lambda r: r["id"])] == labels
