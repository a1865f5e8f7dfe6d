"""`maas train submit`: the CreateTrainingJob request, read back from moto and as sent, and the code it ships.

No AWS call: moto's `mock_aws` with fake credentials. No TensorFlow either: nothing here trains.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from maas.cli import main as cli_main
from training.job import METRIC_DEFINITIONS, build_parser
from training.sagemaker_env import read_env, read_hyperparameters
from training.submit import (
    CHECKPOINT_LOCAL_PATH,
    DEFAULT_INSTANCE_TYPE,
    IMAGE_PYTHON,
    IMAGE_TENSORFLOW,
    MWMS_HYPERPARAMETER,
    Compute,
    SubmitError,
    package_source,
    submit,
    training_image,
    wait,
)

ROOT = Path(__file__).resolve().parents[2]
REGION = "eu-west-1"
BUCKET = "maas-submit-test"
ROLE = "arn:aws:iam::123456789012:role/maas-TrainingJobRole"
TRAIN = "s3://my-data/digits/train/"
VALIDATION = "s3://my-data/digits/validation/"
# What training.models.MetricLines prints after each epoch (keys sorted, 4 decimals).
EPOCH_LINE = "epoch=3 of=15 accuracy=0.9123 loss=0.2345 val_accuracy=0.9001 val_loss=0.3456"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[boto3.session.Session]:
    """A moto account with the model bucket; the session records every CreateTrainingJob as sent."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        session.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        sent: list[dict[str, Any]] = []
        session.events.register(
            "before-parameter-build.sagemaker.CreateTrainingJob",
            lambda params, **_: sent.append(json.loads(json.dumps(params))),
        )
        session.sent = sent  # type: ignore[attr-defined]
        yield session


def _submit(session: Any, **overrides: Any) -> Any:
    options: dict[str, Any] = {
        "role_arn": ROLE,
        "bucket": BUCKET,
        "train": TRAIN,
        "hyperparameters": {"model_name": "digits", "epochs": 3, "learning_rate": 0.002},
        "session": session,
        "log": lambda _: None,
    }
    # The Compute fields (instance type and count, spot, runtime, wait, volume) go in one Compute.
    compute = {k: overrides.pop(k) for k in list(overrides) if k in Compute.__dataclass_fields__}
    return submit(**{**options, **overrides}, compute=Compute(**compute))


def _described(session: Any, name: str) -> dict[str, Any]:
    return session.client("sagemaker").describe_training_job(TrainingJobName=name)


# --- the image ------------------------------------------------------------------------------------


def test_training_image_is_the_tensorflow_gpu_dlc_of_the_region() -> None:
    # The TensorFlow 2.21 SageMaker training DLC, in its full tag: the release constraints.txt tests,
    # on Python 3.12 (a Python the project runs: Lambda's python3.12), CUDA 12.9, Amazon Linux 2023.
    assert training_image("us-east-1") == (
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-training:2.21.0-gpu-py312-cu129-amzn2023-sagemaker"
    )
    assert (IMAGE_TENSORFLOW, IMAGE_PYTHON) == ("2.21.0", "3.12")
    tested = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().split() if "==" in line)
    assert tested["tensorflow_cpu"] == IMAGE_TENSORFLOW
    assert training_image("eu-west-1", "2.19.0-gpu-py312-cu125-ubuntu22.04-sagemaker") == (
        "763104351884.dkr.ecr.eu-west-1.amazonaws.com/tensorflow-training:2.19.0-gpu-py312-cu125-ubuntu22.04-sagemaker"
    )
    # Opt-in and partitioned regions publish the DLCs from accounts of their own.
    assert training_image("af-south-1").startswith("626614931356.dkr.ecr.af-south-1.amazonaws.com/")
    assert training_image("cn-north-1").startswith("727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/")
    with pytest.raises(SubmitError, match="region"):
        training_image("Ireland")


# --- the request ----------------------------------------------------------------------------------


def test_request_read_back_from_sagemaker(aws: Any) -> None:
    submission = _submit(aws, validation=VALIDATION)
    job = _described(aws, submission.job_name)
    assert job["TrainingJobArn"] == submission.job_arn
    assert job["AlgorithmSpecification"]["TrainingImage"] == training_image(REGION)
    assert job["AlgorithmSpecification"]["TrainingInputMode"] == "File"
    assert job["RoleArn"] == ROLE
    assert job["ResourceConfig"] == {"InstanceType": DEFAULT_INSTANCE_TYPE, "InstanceCount": 1, "VolumeSizeInGB": 30}
    assert DEFAULT_INSTANCE_TYPE == "ml.g5.xlarge"
    channels = {c["ChannelName"]: c for c in job["InputDataConfig"]}
    assert set(channels) == {"train", "validation"}
    for name, uri in (("train", TRAIN), ("validation", VALIDATION)):
        assert channels[name]["DataSource"]["S3DataSource"] == {
            "S3DataType": "S3Prefix",
            "S3Uri": uri,
            "S3DataDistributionType": "FullyReplicated",
        }
    assert job["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/training-jobs/"
    # Not spot unless asked: no wait time, no checkpoints.
    assert job["EnableManagedSpotTraining"] is False
    assert "CheckpointConfig" not in job
    assert set(job["StoppingCondition"]) == {"MaxRuntimeInSeconds"}


def test_hyperparameters_are_json_encoded_script_mode_strings(aws: Any, tmp_path: Path) -> None:
    submission = _submit(aws)
    sent = _described(aws, submission.job_name)["HyperParameters"]
    assert all(isinstance(v, str) for v in sent.values())
    assert sent["epochs"] == "3" and sent["learning_rate"] == "0.002"
    assert sent["model_name"] == '"digits"'
    assert sent["sagemaker_program"] == '"entry.py"'
    assert sent["sagemaker_submit_directory"] == json.dumps(submission.source_uri)
    assert submission.source_uri == f"s3://{BUCKET}/training-jobs/{submission.job_name}/source/sourcedir.tar.gz"
    # The job publishes to the registry at its end.
    assert sent["registry_bucket"] == json.dumps(BUCKET)
    # What the job reads from hyperparameters.json is what was asked for, with its types.
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(sent))
    read = read_hyperparameters(tmp_path, {})
    assert {k: read[k] for k in ("model_name", "epochs", "learning_rate", "registry_bucket")} == {
        "model_name": "digits",
        "epochs": 3,
        "learning_rate": 0.002,
        "registry_bucket": BUCKET,
    }


def test_metric_definitions_environment_and_tags_as_sent(aws: Any) -> None:
    submission = _submit(aws)
    (request,) = aws.sent  # moto does not keep these fields: read the request as boto3 sent it
    assert request == submission.request
    spec = request["AlgorithmSpecification"]
    assert spec["MetricDefinitions"] == METRIC_DEFINITIONS
    assert request["Environment"]["KERAS_BACKEND"] == "tensorflow"
    assert request["Environment"]["AWS_DEFAULT_REGION"] == REGION
    assert {"Key": "maas:model", "Value": "digits"} in request["Tags"]


def test_metric_definitions_scrape_the_jobs_epoch_lines() -> None:
    scraped = {}
    for definition in METRIC_DEFINITIONS:
        assert len(definition["Regex"]) <= 500 and re.fullmatch(r"[^\s]{1,255}", definition["Name"])
        match = re.search(definition["Regex"], EPOCH_LINE)
        assert match, definition
        scraped[definition["Name"]] = float(match.group(1))
    # loss must not pick up val_loss, nor accuracy val_accuracy.
    assert scraped == {
        "train:loss": 0.2345,
        "train:accuracy": 0.9123,
        "train:val_loss": 0.3456,
        "train:val_accuracy": 0.9001,
    }
    assert not any(re.search(d["Regex"], "data: 1437 training rows, 360 held-out rows") for d in METRIC_DEFINITIONS)


def test_instance_count_runs_the_job_on_that_many_instances_with_tf_config_asked_for(aws: Any, tmp_path: Path) -> None:
    submission = _submit(aws, instance_count=3)
    job = _described(aws, submission.job_name)
    assert job["ResourceConfig"]["InstanceCount"] == 3
    (request,) = aws.sent
    assert request["ResourceConfig"]["InstanceCount"] == 3
    # What the SDK's estimator sends for distribution={"multi_worker_mirrored_strategy": {"enabled": True}}:
    # the toolkit then sets TF_CONFIG on every instance.
    assert request["HyperParameters"][MWMS_HYPERPARAMETER] == "true"
    # The job takes it (sagemaker_* entries are the toolkit's) and trains as it was asked.
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(request["HyperParameters"]))
    args = build_parser(read_env(tmp_path, {})).parse_args([])
    assert (args.epochs, args.model_name) == (3, "digits")


def test_one_instance_by_default_and_no_distribution_asked_for(aws: Any) -> None:
    _submit(aws)
    (request,) = aws.sent
    assert request["ResourceConfig"]["InstanceCount"] == 1
    assert MWMS_HYPERPARAMETER not in request["HyperParameters"]


def test_spot_waits_at_least_the_runtime_and_checkpoints_under_the_bucket(aws: Any) -> None:
    submission = _submit(aws, spot=True, max_runtime_s=3600, instance_type="ml.g5.2xlarge")
    job = _described(aws, submission.job_name)
    assert job["EnableManagedSpotTraining"] is True
    assert job["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge"
    stopping = job["StoppingCondition"]
    assert stopping["MaxRuntimeInSeconds"] == 3600
    assert stopping["MaxWaitTimeInSeconds"] >= stopping["MaxRuntimeInSeconds"]
    assert job["CheckpointConfig"] == {
        "S3Uri": f"s3://{BUCKET}/training-jobs/{submission.job_name}/checkpoints/",
        "LocalPath": CHECKPOINT_LOCAL_PATH,
    }
    assert CHECKPOINT_LOCAL_PATH == "/opt/ml/checkpoints"
    with pytest.raises(SubmitError, match="max-wait"):
        _submit(aws, spot=True, max_runtime_s=3600, max_wait_s=600)


def test_image_override(aws: Any) -> None:
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/my-training:latest"
    submission = _submit(aws, image=image)
    assert _described(aws, submission.job_name)["AlgorithmSpecification"]["TrainingImage"] == image


# --- the code it ships ----------------------------------------------------------------------------


def _archive(aws: Any, uri: str) -> dict[str, bytes]:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    body = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_sourcedir_holds_the_job_and_the_registry_and_nothing_else(aws: Any) -> None:
    submission = _submit(aws)
    files = _archive(aws, submission.source_uri)
    assert {"entry.py", "requirements.txt", "training/job.py", "training/__init__.py"} <= set(files)
    # The family plug-ins are a subpackage: every module of it travels, or the job cannot import its table.
    families = ROOT / "training" / "families"
    assert {f"training/families/{p.name}" for p in families.glob("*.py")} <= set(files)
    shared = {"registry.py", "__init__.py", "manifest.py", "errors.py"}
    assert {"maas_core/__init__.py"} | {f"maas_core/shared/{name}" for name in shared} <= set(files)
    assert files["training/job.py"] == (ROOT / "training" / "job.py").read_bytes()
    assert files["maas_core/shared/registry.py"] == (ROOT / "src" / "shared" / "registry.py").read_bytes()
    # sagemaker_program runs from the top of the source dir, where training/ and maas_core/ import.
    assert files["entry.py"] == (ROOT / "training" / "entry.py").read_bytes()
    assert b"from training.job import main" in files["entry.py"]
    # The pinned set (test_sagemaker_requirements.py), packed as it is in the checkout.
    assert files["requirements.txt"] == (ROOT / "training" / "requirements.txt").read_bytes()
    assert "training/requirements.txt" not in files
    requirements = [r for r in files["requirements.txt"].decode().split() if not r.startswith("#")]
    assert {r.split("==")[0] for r in requirements} >= {"keras", "tf2onnx", "onnx", "onnxruntime", "numpy", "protobuf"}
    for name in files:
        assert (
            name in {"entry.py", "requirements.txt"}
            or name.startswith(("training/", "maas_core/shared/"))
            or name == "maas_core/__init__.py"
        ), name
        parts = name.split("/")
        assert not {"tests", "__pycache__", ".venv", "venv", ".pytest_cache", ".mypy_cache"} & set(parts), name
        assert not name.endswith((".pyc", ".pyo")), name
        assert not any(p.startswith(".") for p in parts), name
    # Nothing Lambda-only or tooling: no maas_core/functions/, no maas/.
    assert not any(name.startswith(("maas_core/functions/", "functions/", "maas/", "src/")) for name in files)


def test_sourcedir_is_reproducible() -> None:
    assert package_source() == package_source()


# --- local channels -------------------------------------------------------------------------------


def test_a_local_channel_folder_is_uploaded_first(aws: Any, tmp_path: Path) -> None:
    folder = tmp_path / "train"
    (folder / "part").mkdir(parents=True)
    (folder / "digits.npz").write_bytes(b"npz")
    (folder / "labels.json").write_text("[]")
    (folder / "part" / "more.npz").write_bytes(b"more")
    (folder / ".DS_Store").write_bytes(b"junk")
    submission = _submit(aws, train=str(folder))
    prefix = f"training-data/{submission.job_name}/train/"
    assert submission.channels == {"train": f"s3://{BUCKET}/{prefix}"}
    listed = aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]
    assert sorted(o["Key"].removeprefix(prefix) for o in listed) == ["digits.npz", "labels.json", "part/more.npz"]
    (channel,) = _described(aws, submission.job_name)["InputDataConfig"]
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/{prefix}"


# --- refusals before anything is uploaded or started ------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hyperparameters": {"epoch": 3}}, "unknown hyperparameters"),
        ({"hyperparameters": {"model_name": "Digits/../x"}}, "model name"),
        ({"role_arn": "maas-TrainingJobRole"}, "role"),
        ({"bucket": "s3://maas-submit-test"}, "bucket"),
        ({"train": "/nowhere/at/all"}, "neither an s3://"),
        ({"train": "s3://"}, "s3://bucket/prefix"),
        ({"instance_type": "g5.xlarge"}, "instance type"),
        ({"job_name": "bad_name"}, "job name"),
        ({"instance_count": 0}, "--instance-count must be a whole number of instances, at least 1; got 0"),
        ({"instance_count": -2}, "at least 1; got -2"),
        ({"instance_count": 2.5}, "at least 1; got 2.5"),
        ({"instance_count": 2, "spot": True}, "--spot runs on one instance only"),
    ],
)
def test_refuses_what_the_job_or_sagemaker_would(aws: Any, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(SubmitError, match=message):
        _submit(aws, **overrides)
    assert aws.sent == []
    assert "Contents" not in aws.client("s3").list_objects_v2(Bucket=BUCKET)


# --- waiting --------------------------------------------------------------------------------------


def test_wait_returns_the_terminal_state(aws: Any) -> None:
    submission = _submit(aws)
    lines: list[str] = []
    job = wait(submission.job_name, session=aws, sleep=lambda _: None, log=lines.append)
    assert job["TrainingJobStatus"] == "Completed"
    assert lines == [f"{submission.job_name}: Completed (Completed)"]


class _Replay:
    """A SageMaker client that answers DescribeTrainingJob from a script of states."""

    def __init__(self, states: list[dict[str, Any]]) -> None:
        self.states = states
        self.calls = 0

    def client(self, service: str, **_: Any) -> _Replay:
        assert service == "sagemaker"
        return self

    def describe_training_job(self, TrainingJobName: str) -> dict[str, Any]:
        state = self.states[min(self.calls, len(self.states) - 1)]
        self.calls += 1
        return {"TrainingJobName": TrainingJobName, **state}


def test_wait_polls_until_failed_and_reports_the_failure_reason() -> None:
    replay = _Replay(
        [
            {"TrainingJobStatus": "InProgress", "SecondaryStatus": "Starting"},
            {"TrainingJobStatus": "InProgress", "SecondaryStatus": "Starting"},
            {"TrainingJobStatus": "InProgress", "SecondaryStatus": "Training"},
            {
                "TrainingJobStatus": "Failed",
                "SecondaryStatus": "Failed",
                "FailureReason": "AlgorithmError: ChannelError: train channel holds no .npz file",
            },
        ]
    )
    lines: list[str] = []
    slept: list[float] = []
    job = wait("job-1", session=replay, region=REGION, poll_s=5, sleep=slept.append, log=lines.append)
    assert job["TrainingJobStatus"] == "Failed"
    assert slept == [5, 5, 5]
    assert lines == [
        "job-1: InProgress (Starting)",
        "job-1: InProgress (Training)",
        "job-1: Failed (Failed)",
        "failure reason: AlgorithmError: ChannelError: train channel holds no .npz file",
    ]


# --- the CLI --------------------------------------------------------------------------------------


def test_cli_submits_and_waits(aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "submit", "--role-arn", ROLE, "--bucket", BUCKET, "--train", TRAIN, "--region", REGION]
    argv += ["--epochs", "2", "--name", "digits-gpu", "-H", "holdout_fraction=0.25", "--spot", "--wait", "--poll", "0"]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    (arn,) = re.findall(r"^job: (arn:aws:sagemaker:\S+)$", out, re.MULTILINE)
    name = arn.rsplit("/", 1)[1]
    assert name.startswith("digits-gpu-") and f"{name}: Completed" in out
    job = _described(aws, name)
    assert job["EnableManagedSpotTraining"] is True
    hp = job["HyperParameters"]
    assert (hp["epochs"], hp["model_name"], hp["holdout_fraction"]) == ("2", '"digits-gpu"', "0.25")


def test_cli_needs_a_bucket_and_reports_refusals(aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stderr(io.StringIO()):
        cli_main(["train", "submit", "--role-arn", ROLE, "--train", TRAIN])
    assert exit_info.value.code == 2
    assert cli_main(["train", "submit", "--role-arn", "nope", "--bucket", BUCKET, "--train", TRAIN]) == 2
    assert "--role-arn 'nope'" in capsys.readouterr().err


def test_sourcedir_leaves_out_tests_caches_and_environments(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from training import submit as submit_module

    package = tmp_path / "training"
    for name in ("job.py", "tests/test_job.py", "__pycache__/job.cpython-311.pyc", ".venv/lib/x.py", "old.pyc"):
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text("x = 1\n")
    (package / "entry.py").write_bytes((ROOT / "training" / "entry.py").read_bytes())
    monkeypatch.setitem(submit_module.PACKAGES, "training", package)
    with tarfile.open(fileobj=io.BytesIO(package_source()), mode="r:gz") as tar:
        names = {m.name for m in tar.getmembers()}
    assert {n for n in names if n.startswith("training/")} == {"training/job.py", "training/entry.py"}


def test_cli_execution_input_uploads_but_starts_nothing(aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "submit", "--role-arn", ROLE, "--bucket", BUCKET, "--train", TRAIN, "--region", REGION]
    assert cli_main([*argv, "--execution-input", "--job-name", "digits-sfn-1"]) == 0
    given = json.loads(capsys.readouterr().out)  # stdout is the JSON alone; progress went to stderr
    assert aws.sent == []
    assert aws.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []
    assert given["job_name"] == "digits-sfn-1" and given["image"] == training_image(REGION)
    assert given["hyperparameters"]["sagemaker_submit_directory"] == json.dumps(
        f"s3://{BUCKET}/training-jobs/digits-sfn-1/source/sourcedir.tar.gz"
    )
    assert "entry.py" in _archive(aws, json.loads(given["hyperparameters"]["sagemaker_submit_directory"]))
    assert given["metric_definitions"] == METRIC_DEFINITIONS
    assert cli_main([*argv, "--execution-input", "--spot"]) == 2


def test_cli_names_an_unnamed_job_after_its_family(aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --name a tabular job publishes breast-cancer (the family's name, as `maas train local`
    does), not digits; the job name and the maas:model tag say the same."""
    argv = ["train", "submit", "--role-arn", ROLE, "--bucket", BUCKET, "--train", TRAIN, "--region", REGION]
    assert cli_main([*argv, "-H", "family=tabular", "--execution-input"]) == 0
    given = json.loads(capsys.readouterr().out)
    assert given["hyperparameters"]["model_name"] == '"breast-cancer"'
    assert given["job_name"].startswith("breast-cancer-")
    assert cli_main([*argv, "-H", "family=svm", "--execution-input"]) == 2
    assert "family must be one of image, tabular" in capsys.readouterr().err


def test_cli_instance_count(aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "submit", "--role-arn", ROLE, "--bucket", BUCKET, "--train", TRAIN, "--region", REGION]
    assert cli_main([*argv, "--instance-count", "2"]) == 0
    out = capsys.readouterr().out
    assert "started on 2 x ml.g5.xlarge" in out
    (arn,) = re.findall(r"^job: (arn:aws:sagemaker:\S+)$", out, re.MULTILINE)
    job = _described(aws, arn.rsplit("/", 1)[1])
    assert job["ResourceConfig"]["InstanceCount"] == 2
    assert job["HyperParameters"][MWMS_HYPERPARAMETER] == "true"
    assert cli_main([*argv, "--instance-count", "0"]) == 2
    assert "--instance-count must be a whole number of instances, at least 1; got 0" in capsys.readouterr().err
    assert cli_main([*argv, "--instance-count", "2", "--spot"]) == 2
    assert "--spot runs on one instance only" in capsys.readouterr().err
    # The state machine runs the same N instances (statemachines/training.asl.json: InstanceCount.$).
    assert cli_main([*argv, "--instance-count", "2", "--execution-input"]) == 0
    given = json.loads(capsys.readouterr().out)
    assert given["instance_count"] == 2 and given["hyperparameters"][MWMS_HYPERPARAMETER] == "true"
    assert len(aws.client("sagemaker").list_training_jobs()["TrainingJobSummaries"]) == 1  # printed, not started


def test_cli_preset_reaches_the_job_as_a_hyperparameter(aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "submit", "--role-arn", ROLE, "--bucket", BUCKET, "--train", TRAIN, "--region", REGION]
    assert cli_main([*argv, "-H", "family=transformer", "--preset", "tiny"]) == 0
    (arn,) = re.findall(r"^job: (arn:aws:sagemaker:\S+)$", capsys.readouterr().out, re.MULTILINE)
    job = _described(aws, arn.rsplit("/", 1)[1])
    assert json.loads(job["HyperParameters"]["preset"]) == "tiny"
    with pytest.raises(SystemExit):  # argparse names the presets it takes
        cli_main([*argv, "--preset", "huge"])
    assert "invalid choice: 'huge'" in capsys.readouterr().err
