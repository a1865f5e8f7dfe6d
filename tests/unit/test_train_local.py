"""`maas train local --data s3://...`: the channel is copied from S3 as SageMaker's File mode does."""

import json

import pytest

from maas.train_local import layout, promote_first_version
from maas_core.shared.registry import Registry


def test_an_s3_prefix_becomes_the_train_channel(s3, tmp_path):
    bucket = "maas-test-models"
    s3.put_object(Bucket=bucket, Key="training-data/digits/train/part-0.csv", Body=b"a,label\n1,0\n")
    s3.put_object(Bucket=bucket, Key="training-data/digits/train/sub/part-1.csv", Body=b"a,label\n2,1\n")
    s3.put_object(Bucket=bucket, Key="training-data/other/x.csv", Body=b"not mine")
    env = layout(tmp_path / "opt_ml", f"s3://{bucket}/training-data/digits/train/", {"epochs": 1}, {})
    train = tmp_path / "opt_ml" / "input" / "data" / "train"
    assert env["SM_CHANNEL_TRAIN"] == str(train)
    assert sorted(p.relative_to(train).as_posix() for p in train.rglob("*.csv")) == ["part-0.csv", "sub/part-1.csv"]
    hyperparameters = json.loads((tmp_path / "opt_ml" / "input" / "config" / "hyperparameters.json").read_text())
    assert hyperparameters == {"epochs": "1"}


def test_an_empty_prefix_is_refused(s3, tmp_path):
    with pytest.raises(SystemExit, match="nothing under"):
        layout(tmp_path / "opt_ml", "s3://maas-test-models/training-data/none/", {}, {})


def test_a_local_run_promotes_a_models_first_version_and_never_moves_production(s3, digits_onnx, make_manifest, capsys):
    """The job only adds versions; `maas train local` (the developer's credentials) sets production once."""
    bucket = "maas-test-models"
    registry = Registry(bucket, s3=s3)
    first = registry.publish("digits", digits_onnx, make_manifest(), alias_on_first_publish=None)
    env = {"AWS_DEFAULT_REGION": "us-east-1"}
    promote_first_version(bucket, first, env)
    assert registry.resolve("digits") == first.version
    assert registry.alias_history("digits", "production")[-1]["updated_by"] == "maas train local"
    second = registry.publish(
        "digits", digits_onnx, make_manifest(), version="20991231T000000Z-00000000", alias_on_first_publish=None
    )
    promote_first_version(bucket, second, env)
    assert registry.resolve("digits") == first.version, "a later run leaves production where it is"
    assert f"maas models promote digits {second.version}" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["local", "submit"])
def test_the_objective_reaches_the_job_as_a_hyperparameter_it_knows(command):
    from maas.cli import HYPERPARAMETER_OPTIONS, _given, build_parser
    from training.job import DEFAULTS

    required = (
        ["--role-arn", "arn:aws:iam::1:role/r", "--bucket", "b", "--train", "s3://b/t/"] if command == "submit" else []
    )
    args = build_parser().parse_args(["train", command, "--objective", "size", *required])
    assert _given(args, *HYPERPARAMETER_OPTIONS) == {"objective": "size"}
    assert set(HYPERPARAMETER_OPTIONS) <= set(DEFAULTS)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", command, "--objective", "fastest", *required])
