"""The family table (training.families): one module per family, read by the job, `maas train local`
and `maas train submit`. No Keras here: what is checked is what the table tells each reader."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest

from maas.cli import build_parser
from maas.train_local import layout
from training.data import load_channel
from training.families import CLASSIFICATION, DEFAULT_FAMILY, FAMILIES, REGRESSION, family
from training.submit import model_name

# What each family trains on when a local run names no data, and the registry name it publishes.
EXAMPLES = {
    "image": ((8, 8, 1), "digits"),
    "tabular": ((30,), "breast-cancer"),
    "logistic": ((30,), "breast-cancer-logistic"),
    "linear": ((10,), "diabetes"),
    "text": ((), "reviews"),
    "text-rnn": ((), "reviews-rnn"),
    "transformer": ((), "reviews-transformer"),
}


def test_the_table_lists_every_family_once_by_its_name():
    assert list(FAMILIES) == list(EXAMPLES)
    assert all(family(name).name == name for name in FAMILIES)
    assert DEFAULT_FAMILY == "image"
    with pytest.raises(
        ValueError, match="family must be one of image, tabular, logistic, linear, text, text-rnn, transformer"
    ):
        family("svm")


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_a_local_run_without_data_trains_on_the_familys_example(tmp_path: Path, name: str):
    chosen = family(name)
    env = layout(tmp_path / "opt_ml", None, {"family": name}, {})
    options = {"text_column": "text"} if chosen.text else {}
    data = load_channel(env["SM_CHANNEL_TRAIN"], task=chosen.task, **options)
    shape, registry_name = EXAMPLES[name]
    assert data.x.shape[1:] == shape
    assert chosen.rows_problem(name, data.x) is None, "a family accepts its own example"
    assert (len(data.labels) >= 2) == (chosen.task == CLASSIFICATION)
    assert chosen.default_model_name == registry_name == model_name({"family": name})


def test_feature_rows_and_images_are_refused_by_the_other_kind():
    images, rows = np.zeros((4, 8, 8, 1), np.float32), np.zeros((4, 3), np.float32)
    assert "trains on images (N x H x W x C)" in str(family("image").rows_problem("image", rows))
    for name in ("tabular", "logistic", "linear"):
        assert f"family {name!r} trains on rows of features" in str(family(name).rows_problem(name, images))
    assert family("linear").task == REGRESSION and not family("linear").classification


def test_the_cli_offers_the_tables_families():
    args = build_parser().parse_args(["train", "local", "--family", "text-rnn"])
    assert args.family == "text-rnn"
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()) as err:
        build_parser().parse_args(["train", "local", "--family", "svm"])
    assert "--family {image,tabular,logistic,linear,text,text-rnn,transformer}" in err.getvalue()
    assert "invalid choice: 'svm'" in err.getvalue()


def test_a_submitted_job_is_named_after_its_family_unless_named():
    """`maas train submit -H family=tabular` without --name publishes breast-cancer, as `train local` does."""
    assert model_name({"family": "tabular"}) == "breast-cancer"
    assert model_name({}) == "digits"
    assert model_name({"family": "tabular", "model_name": "mine"}) == "mine"
