"""The tabular model families (tabular MLP, logistic and linear regression) and the CSV / JSON Lines
channels: each family trains on a CSV channel, exports with parity, publishes to a moto registry
and is served from raw feature values through the model cache and the inference core.

One short job per family is shared by the module; the failure cases stop before Keras is imported.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_job import clean_env, mocked_registry, run_to_publish, write_hyperparameters

from maas_core.shared import inference
from maas_core.shared.manifest import Manifest
from maas_core.shared.model_cache import ModelCache
from maas_core.shared.registry import Registry
from training.compress import Candidate, Compression, choose
from training.data import ChannelError, load_channel, write_digits_channel, write_tabular_channel
from training.job import main

pytestmark = pytest.mark.training

BUCKET = "maas-test-tabular-models"
# family -> (bundled data set, hyperparameters of a short run)
RUNS: dict[str, tuple[str, dict[str, Any]]] = {
    "tabular": ("breast_cancer", {"epochs": 5, "compression": "int8-dynamic"}),
    "logistic": ("wine", {"epochs": 8, "compression": "fp16", "model_name": "wine-logistic"}),
    "linear": ("diabetes", {"epochs": 10}),
}


def opt_ml(root: Path, dataset: str, hyperparameters: dict[str, Any]) -> Path:
    write_tabular_channel(root / "input" / "data" / "train", dataset, seed=1)
    return write_hyperparameters(root, hyperparameters)


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    """Run one short job per family against one mocked registry bucket; the mock stays up."""
    with pytest.MonkeyPatch.context() as mp, mocked_registry(mp, BUCKET):
        done = {}
        for family, (dataset, hp) in RUNS.items():
            root = opt_ml(tmp_path_factory.mktemp(family), dataset, {"family": family, "seed": 3, **hp})
            done[family] = run_to_publish(root)
        yield done


def feature_names(dataset: str) -> list[str]:
    import sklearn.datasets

    return [str(n) for n in getattr(sklearn.datasets, f"load_{dataset}")().feature_names]


@pytest.mark.parametrize("family", list(RUNS))
def test_published_manifest_describes_the_family(jobs, family):
    dataset, hp = RUNS[family]
    job = jobs[family]
    manifest = Registry(BUCKET).read_manifest(job.published["name"], job.published["version"]).to_json()
    Manifest.from_json(manifest)
    columns = feature_names(dataset)
    assert manifest["inputs"] == [
        {"name": "features", "dtype": "float32", "shape": [None, len(columns)], "columns": columns}
    ]
    assert "standardise" in " ".join(manifest["preprocessing"]["in_graph"])
    assert "do not standardise" in manifest["preprocessing"]["client"]
    assert manifest["training_job"]["hyperparameters"]["family"] == family
    metrics, compression = manifest["metrics"], manifest["compression"]
    assert metrics["parity_max_abs_diff"] <= 1e-3
    methods = [c["method"] for c in compression["candidates"]]
    assert methods == ["fp32", *(hp.get("compression", "int8-dynamic,int8-static,fp16").split(","))]
    if family == "linear":
        assert manifest["task"] == "regression" and "labels" not in manifest
        assert manifest["outputs"] == [{"name": "prediction", "dtype": "float32", "shape": [None, 1]}]
        assert 0 < metrics["rmse"] < 80 and 0 < metrics["mae"] < metrics["rmse"], metrics  # target std is 77
        assert metrics["fp32_rmse"] > 0 and "accuracy" not in metrics
        assert compression["max_rmse_increase_pct"] == 1.0 and "max_accuracy_drop_points" not in compression
        for c in compression["candidates"]:
            assert "accuracy" not in c and (c["rmse"] > 0 or c["reason"].startswith("rejected:")), c
        chosen = next(c for c in compression["candidates"] if c["accepted"])
        assert chosen["rmse"] <= metrics["fp32_rmse"] * 1.01 + 1e-9
        assert "regression target" in job.stdout and "rmse " in job.stdout
    else:
        names = {"breast_cancer": ["benign", "malignant"], "wine": ["class_0", "class_1", "class_2"]}[dataset]
        assert manifest["task"] == "classification" and manifest["labels"] == names
        assert manifest["outputs"] == [{"name": "probabilities", "dtype": "float32", "shape": [None, len(names)]}]
        assert metrics["accuracy"] > 0.8 and metrics["fp32_accuracy"] > 0.8, metrics
        assert compression["max_accuracy_drop_points"] == 0.5


@pytest.mark.parametrize("family", list(RUNS))
def test_served_model_answers_raw_values_as_keras_does(jobs, family):
    import keras

    job = jobs[family]
    train = load_channel(
        job.root / "input" / "data" / "train", task="regression" if family == "linear" else "classification"
    )
    rows = train.x[:5]
    assert np.ptp(rows) > 100, "raw, unstandardised values: a graph without standardisation would be far off"
    expected = keras.saving.load_model(job.root / "model" / "model.keras").predict(rows, verbose=0)

    cache = ModelCache(BUCKET, registry=Registry(BUCKET))
    model = cache.get(job.published["name"], job.published["version"])
    assert model.version == job.published["version"]
    feeds = inference.feeds_from_body({"instances": rows.tolist()}, model, max_batch=16)
    outputs = inference.run(model, feeds)
    predictions = inference.format_predictions(model, outputs)
    if family == "linear":
        got = np.asarray([p["prediction"][0] for p in predictions])
        np.testing.assert_allclose(got, expected[:, 0], rtol=0.02)
    else:
        got = np.asarray([p["probabilities"] for p in predictions])
        assert np.max(np.abs(got - expected)) < 0.05
        assert [p["label"] for p in predictions] == [model.labels[i] for i in expected.argmax(1)]


def test_csv_and_jsonl_channels_load_the_same_data(tmp_path):
    csv_dir = write_tabular_channel(tmp_path / "csv", "wine")
    from_csv = load_channel(csv_dir)
    with (csv_dir / "wine.csv").open(newline="") as f:
        records = list(csv.DictReader(f))
    keyed, pairs = tmp_path / "keyed", tmp_path / "pairs"
    keyed.mkdir()
    pairs.mkdir()
    (keyed / "part-0.jsonl").write_text(
        "".join(json.dumps({k: (v if k == "label" else float(v)) for k, v in r.items()}) + "\n" for r in records)
    )
    (pairs / "part-0.jsonl").write_text(
        "".join(
            json.dumps({"x": [float(r[c]) for c in from_csv.columns or []], "y": r["label"]}) + "\n" for r in records
        )
    )
    for folder, columns in ((keyed, from_csv.columns), (pairs, None)):
        data = load_channel(folder)
        np.testing.assert_array_equal(data.x, from_csv.x)
        np.testing.assert_array_equal(data.y, from_csv.y)
        assert data.labels == from_csv.labels == ["class_0", "class_1", "class_2"]
        assert data.columns == columns
    assert from_csv.x.shape == (178, 13) and from_csv.columns == feature_names("wine")


def test_regression_labels_and_a_named_label_column(tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    (folder / "a.csv").write_text("y,size,rooms\n10.5,100,3\n20,200,4\n")
    data = load_channel(folder, label_column="y", task="regression")
    assert data.columns == ["size", "rooms"] and data.y.tolist() == [10.5, 20.0] and data.labels == []
    (folder / "b.csv").write_text("y,size,rooms\nbig,1,2\n")
    with pytest.raises(ChannelError, match=r"regression label of row 3: expected a number, got 'big'"):
        load_channel(folder, label_column="y", task="regression")


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({"a.csv": "x1,label\n1,a\n", "b.jsonl": '{"x1": 1, "label": "a"}\n'}, "holds several formats"),
        ({"a.csv": "x1,label\n"}, "the .csv files hold no rows"),
        ({"a.csv": ""}, "a.csv: empty file"),
        ({"a.jsonl": '{"x1": 1, "label": "a"}\n{"x1": 2}\n'}, "a.jsonl line 2: keys differ"),
        ({"a.csv": "x1,label\n1,a\n2\n"}, "a.csv line 3: 1 values for 2 columns"),
    ],
)
def test_a_channel_says_what_came(tmp_path, files, reason):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ChannelError, match=reason):
        load_channel(tmp_path)


def test_a_missing_label_column_fails_the_job_naming_it(tmp_path, monkeypatch):
    clean_env(monkeypatch)
    root = opt_ml(tmp_path / "opt_ml", "breast_cancer", {"family": "tabular", "label_column": "diagnosis"})
    assert main([], root=root) == 1
    failure = (root / "output" / "failure").read_text()
    assert "breast_cancer.csv: no label column 'diagnosis' in the header" in failure
    assert "label_column" in failure and len(failure) <= 1025
    assert not (root / "model").exists()


@pytest.mark.parametrize(
    ("hyperparameters", "reason"),
    [
        (
            {"family": "tabular", "compression": "pruned"},
            "compression ['pruned'] is available for the image family only",
        ),
        ({"family": "forest"}, "family must be one of image, tabular, logistic, linear"),
        ({"family": "image"}, "family 'image' trains on images (N x H x W x C)"),
    ],
)
def test_family_mismatches_fail_before_training(tmp_path, monkeypatch, hyperparameters, reason):
    clean_env(monkeypatch)
    root = opt_ml(tmp_path / "opt_ml", "wine", hyperparameters)
    assert main([], root=root) == 1
    assert reason in (root / "output" / "failure").read_text()


def test_tabular_family_refuses_images(tmp_path, monkeypatch):
    clean_env(monkeypatch)
    root = opt_ml(tmp_path / "opt_ml", "wine", {"family": "logistic"})
    for f in (root / "input" / "data" / "train").iterdir():
        f.unlink()
    write_digits_channel(root / "input" / "data" / "train")
    assert main([], root=root) == 1
    assert "family 'logistic' trains on rows of features" in (root / "output" / "failure").read_text()


def regression(method: str, size: int, rmse: float | None) -> Candidate:
    return Candidate(method, f"model.{method}.onnx", size, None, None if rmse is None else 0.1, rmse=rmse, mae=rmse)


@pytest.mark.parametrize(("int8_rmse", "published"), [(50.0, "int8-dynamic"), (50.5, "int8-dynamic"), (50.51, "fp32")])
def test_regression_gate_allows_one_percent_more_rmse(int8_rmse, published):
    fp32, int8 = regression("fp32", 2000, 50.0), regression("int8-dynamic", 900, int8_rmse)
    broken = regression("fp16", 10, None)
    chosen = choose([fp32, int8, broken], 0.5, task="regression", max_rmse_increase_pct=1.0, objective="size")
    assert chosen.method == published and [c.accepted for c in (fp32, int8, broken)].count(True) == 1
    assert "%" in int8.reason
    entry = Compression(chosen, [fp32, int8, broken], 0.5, eval_rows=9, task="regression").to_manifest()
    assert entry["max_rmse_increase_pct"] == 1.0 and "rmse" in entry["selection"]
    assert "accuracy" not in entry["candidates"][0] and entry["candidates"][1]["rmse"] == int8_rmse
