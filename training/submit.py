"""`maas train submit`: start the training job on SageMaker with boto3's ``CreateTrainingJob``.

The request is what the SageMaker Python SDK's TensorFlow estimator would send in script mode,
without the SDK: the AWS Deep Learning Containers TensorFlow GPU training image for the region, the
project's ``training/`` and ``maas_core/shared/`` packed as ``sourcedir.tar.gz`` with a top-level ``entry.py``
(``sagemaker_program``) and a ``requirements.txt`` the container installs first (``training/requirements.txt``:
the job's packages pinned to what constraints.txt tests), channels from S3,
hyperparameters JSON-encoded, ``MetricDefinitions`` scraped from the job's epoch lines, and
``registry_bucket`` so the job publishes its model to the registry as its last step.

    s3://<bucket>/training-jobs/<job>/source/sourcedir.tar.gz    the code
    s3://<bucket>/training-data/<job>/<channel>/                 a local channel folder, uploaded
    s3://<bucket>/training-jobs/<job>/output/model.tar.gz        what SageMaker keeps of /opt/ml/model
    s3://<bucket>/training-jobs/<job>/checkpoints/               /opt/ml/checkpoints, with --spot
    s3://<bucket>/models/<name>/<version>/                       the published model (the registry)
"""

from __future__ import annotations

import gzip
import io
import json
import re
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import maas_core
import maas_core.shared.registry
from maas_core.shared.layout import (
    NAME_RE,
    TRAINING_JOBS_PREFIX,
    training_checkpoints_prefix,
    training_data_prefix,
    training_source_key,
)
from training.families import DEFAULT_FAMILY, family
from training.job import DEFAULTS, METRIC_DEFINITIONS

DEFAULT_INSTANCE_TYPE = "ml.g5.xlarge"
# The job's image: the AWS Deep Learning Container for SageMaker training with TensorFlow 2.21.0 on
# Python 3.12 (CUDA 12.9, Amazon Linux 2023), the TensorFlow line constraints.txt tests; its full tag,
# as aws/deep-learning-containers docs/src/data/tensorflow-training/2.21-gpu-sagemaker.yml lists it.
# Its Keras is the one the image's lock file resolves (docker/tensorflow/2.21/cuda/uv.lock);
# requirements.txt moves it to the tested one. tests/training_job/test_sagemaker_container.py builds
# this Python with this TensorFlow and Keras, installs requirements.txt over them and runs entry.py.
IMAGE_REPOSITORY = "tensorflow-training"
IMAGE_PYTHON = "3.12"
IMAGE_TENSORFLOW = "2.21.0"
IMAGE_KERAS = "3.15.0"
IMAGE_TAG = f"{IMAGE_TENSORFLOW}-gpu-py{IMAGE_PYTHON.replace('.', '')}-cu129-amzn2023-sagemaker"
DEFAULT_MAX_RUNTIME_S = 4 * 3600
DEFAULT_INSTANCE_COUNT = 1
# With more than one instance, what asks the SageMaker TensorFlow toolkit to set TF_CONFIG for
# MultiWorkerMirroredStrategy on every instance before it starts entry.py: the hyperparameter the SDK's
# TensorFlow estimator sends for distribution={"multi_worker_mirrored_strategy": {"enabled": True}}
# (aws/sagemaker-python-sdk, EstimatorBase.LAUNCH_MWMS_ENV_NAME, sent as json.dumps(True) in
# tests/unit/sagemaker/tensorflow/test_estimator.py::test_fit_mwms). training.distributed reads the cluster.
MWMS_HYPERPARAMETER = "sagemaker_multi_worker_mirrored_strategy_enabled"
DEFAULT_VOLUME_GB = 30
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
PROGRAM = "entry.py"
TERMINAL_STATES = ("Completed", "Failed", "Stopped")

# Where AWS publishes the Deep Learning Containers: one account for most regions, its own account
# in the opt-in, China and GovCloud regions (the SageMaker Python SDK's image_uri_config/tensorflow.json).
DLC_ACCOUNT = "763104351884"
DLC_REGION_ACCOUNTS = {
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-northeast-3": "364406365360",
    "ap-south-2": "772153158452",
    "ap-southeast-3": "907027046896",
    "ap-southeast-4": "457447274322",
    "cn-north-1": "727897471807",
    "cn-northwest-1": "727897471807",
    "eu-central-2": "380420809688",
    "eu-south-1": "692866216735",
    "eu-south-2": "503227376785",
    "me-central-1": "914824155844",
    "me-south-1": "217643126080",
    "us-gov-east-1": "446045086412",
    "us-gov-west-1": "442386744353",
}

# The image brings Python and TensorFlow; the toolkit pip-installs this file (the source dir's
# requirements.txt) over them before it starts entry.py.
REQUIREMENTS = Path(__file__).resolve().parent / "requirements.txt"

# What the job imports, by folder: found from the modules' files rather than the packages', which
# a same-named folder of tests (tests/training) can turn into namespace packages without one.
PACKAGES = {
    "training": Path(__file__).resolve().parent,
    "maas_core/shared": Path(maas_core.shared.registry.__file__).resolve().parent,
}
# maas_core's own __init__.py, without the rest of it (functions/ is Lambda's, not the job's).
PACKAGE_INITS = {"maas_core/__init__.py": Path(maas_core.__file__).resolve()}
# Nothing a job does not import: tests, caches, virtual environments, editor and VCS leftovers.
_EXCLUDED_DIRS = {"__pycache__", "tests", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".venv", "venv"}
_EXCLUDED_SUFFIXES = (".pyc", ".pyo", ".so.tmp", ".swp")

_JOB_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]$")


class SubmitError(ValueError):
    """The job cannot be submitted as asked; the message says what to change."""


@dataclass(frozen=True)
class Compute:
    """What a job runs on: CreateTrainingJob's ResourceConfig and StoppingCondition, and spot capacity."""

    instance_type: str = DEFAULT_INSTANCE_TYPE
    instance_count: int = DEFAULT_INSTANCE_COUNT
    spot: bool = False
    max_runtime_s: int = DEFAULT_MAX_RUNTIME_S
    max_wait_s: int | None = None  # spot only; default 2 x max_runtime_s
    volume_gb: int = DEFAULT_VOLUME_GB

    def check(self) -> None:
        """Refuse what the job or SageMaker cannot run, before anything is uploaded."""
        count = self.instance_count
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise SubmitError(f"--instance-count must be a whole number of instances, at least 1; got {count!r}")
        if self.spot and count > 1:
            # A spot job resumes from /opt/ml/checkpoints, which only the chief writes (training.distributed):
            # every worker would have to restore the same checkpoint, which nothing here has shown.
            raise SubmitError(
                f"--spot runs on one instance only (checkpoints are the chief's); got --instance-count {count}: "
                "drop --spot, or train on one instance"
            )
        if not self.instance_type.startswith("ml."):
            raise SubmitError(f"--instance-type {self.instance_type!r} is not a SageMaker instance type (ml.g5.xlarge)")
        if self.spot and self.max_wait_s is not None and self.max_wait_s < self.max_runtime_s:
            raise SubmitError(
                f"--max-wait ({self.max_wait_s} s) must be at least --max-runtime ({self.max_runtime_s} s)"
            )

    def describe(self) -> str:
        where = f"{self.instance_count} x {self.instance_type}" if self.instance_count > 1 else self.instance_type
        return where + (" (spot)" if self.spot else "")


DEFAULT_COMPUTE = Compute()


@dataclass(frozen=True)
class Submission:
    job_name: str
    job_arn: str
    region: str
    request: dict[str, Any]  # exactly what was sent to CreateTrainingJob
    source_uri: str
    channels: dict[str, str]  # channel -> S3 prefix


def training_image(region: str, tag: str = IMAGE_TAG) -> str:
    """The AWS Deep Learning Containers TensorFlow GPU training image for a region.

    ``<account>.dkr.ecr.<region>.amazonaws.com/tensorflow-training:<tag>``; the tag
    (``2.21.0-gpu-py312-cu129-amzn2023-sagemaker``) follows the image's patch releases, never another
    TensorFlow or Python.
    """
    if not _REGION_RE.match(region):
        raise SubmitError(f"not an AWS region: {region!r}")
    account = DLC_REGION_ACCOUNTS.get(region, DLC_ACCOUNT)
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{domain}/{IMAGE_REPOSITORY}:{tag}"


def default_job_name(model_name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{model_name[:40].rstrip('-')}-{stamp}-{uuid.uuid4().hex[:4]}"


def encode_hyperparameters(values: Mapping[str, Any]) -> dict[str, str]:
    """SageMaker takes string values; script mode JSON-encodes each one (10 -> "10", "a" -> "\\"a\\"")."""
    return {str(k): json.dumps(v) for k, v in values.items()}


def _source_files() -> Iterator[tuple[str, Path]]:
    """(name in the archive, file) for training/ and maas_core/shared/, sorted, without tests or caches."""
    yield from PACKAGE_INITS.items()
    for package, root in PACKAGES.items():
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if not path.is_file() or path.suffix in _EXCLUDED_SUFFIXES or path.name.endswith(_EXCLUDED_SUFFIXES):
                continue
            if any(part in _EXCLUDED_DIRS or part.startswith(".") for part in relative.parts):
                continue
            if path == REQUIREMENTS:  # packed once, on top, where the toolkit looks for it
                continue
            yield f"{package}/{relative.as_posix()}", path


def package_source() -> bytes:
    """``sourcedir.tar.gz``: entry.py and requirements.txt on top, then training/ and maas_core/shared/.

    Byte-for-byte reproducible (sorted, mtime 0, root-owned), so the same code gives the same tarball.
    """

    def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, 0
        tar.addfile(info, io.BytesIO(data))

    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        add(tar, PROGRAM, (PACKAGES["training"] / "entry.py").read_bytes())
        add(tar, "requirements.txt", REQUIREMENTS.read_bytes())
        for name, path in _source_files():
            add(tar, name, path.read_bytes())
    return buffer.getvalue()


def _upload_channel(s3: Any, bucket: str, job_name: str, channel: str, source: str) -> str:
    """An s3:// prefix is used as it is; a local folder (or file) is uploaded under training-data/."""
    if source.startswith("s3://"):
        if not re.match(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$", source):
            raise SubmitError(f"--{channel} {source!r} is not an s3://bucket/prefix URI")
        return source
    path = Path(source)
    if not path.exists():
        raise SubmitError(f"--{channel} {source!r} is neither an s3:// URI nor a local folder or file")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    files = [p for p in files if not any(part.startswith(".") for part in p.relative_to(path.parent).parts)]
    if not files:
        raise SubmitError(f"--{channel} {source!r} holds no files")
    prefix = training_data_prefix(job_name, channel)
    for file in files:
        name = file.relative_to(path).as_posix() if path.is_dir() else file.name
        s3.upload_file(str(file), bucket, prefix + name)
    return f"s3://{bucket}/{prefix}"


def check_hyperparameters(hyperparameters: Mapping[str, Any]) -> None:
    """Refuse what the job would refuse at start-up, before an instance is paid for."""
    known = {*DEFAULTS, "registry_bucket"}
    unknown = sorted(set(hyperparameters) - known)
    if unknown:
        raise SubmitError(f"unknown hyperparameters {unknown}; the job takes {sorted(known)}")
    if "model_name" in hyperparameters and not NAME_RE.match(str(hyperparameters["model_name"])):
        raise SubmitError(f"model name {hyperparameters['model_name']!r} must match {NAME_RE.pattern}")
    try:
        family(str(hyperparameters.get("family", DEFAULT_FAMILY)))
    except ValueError as exc:
        raise SubmitError(str(exc)) from None


def model_name(hyperparameters: Mapping[str, Any]) -> str:
    """The registry name the job will publish under: the one given, else the family's."""
    given = hyperparameters.get("model_name")
    return str(given) if given else family(str(hyperparameters.get("family", DEFAULT_FAMILY))).default_model_name


def build_request(
    *,
    job_name: str,
    image: str,
    role_arn: str,
    bucket: str,
    region: str,
    source_uri: str,
    channels: Mapping[str, str],
    hyperparameters: Mapping[str, Any],
    compute: Compute = DEFAULT_COMPUTE,
) -> dict[str, Any]:
    """The CreateTrainingJob request; no AWS call."""
    compute.check()
    instance_type, instance_count, spot = compute.instance_type, compute.instance_count, compute.spot
    max_runtime_s, max_wait_s = compute.max_runtime_s, compute.max_wait_s
    script_mode = {
        "sagemaker_program": PROGRAM,
        "sagemaker_submit_directory": source_uri,
        "sagemaker_region": region,
        "sagemaker_container_log_level": 20,
    }
    if instance_count > 1:
        script_mode[MWMS_HYPERPARAMETER] = True
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": max_runtime_s}
    request: dict[str, Any] = {
        "TrainingJobName": job_name,
        "RoleArn": role_arn,
        "AlgorithmSpecification": {
            "TrainingImage": image,
            "TrainingInputMode": "File",
            "MetricDefinitions": [dict(d) for d in METRIC_DEFINITIONS],
            "EnableSageMakerMetricsTimeSeries": True,
        },
        "HyperParameters": encode_hyperparameters({**hyperparameters, "registry_bucket": bucket, **script_mode}),
        "InputDataConfig": [
            {
                "ChannelName": name,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "CompressionType": "None",
                "InputMode": "File",
            }
            for name, uri in channels.items()
        ],
        # SageMaker adds <job name>/output/model.tar.gz under this.
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/{TRAINING_JOBS_PREFIX}"},
        "ResourceConfig": {
            "InstanceType": instance_type,
            "InstanceCount": instance_count,
            "VolumeSizeInGB": compute.volume_gb,
        },
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": spot,
        # The region for the job's own boto3 calls (the registry publish), and the Keras backend
        # export needs, whatever the image's default.
        "Environment": {"KERAS_BACKEND": "tensorflow", "AWS_DEFAULT_REGION": region},
        "Tags": [
            {"Key": "project", "Value": "maas"},
            {"Key": "maas:model", "Value": model_name(hyperparameters)},
        ],
    }
    if spot:
        # Waiting for capacity counts against MaxWaitTimeInSeconds, which must cover the run itself.
        stopping["MaxWaitTimeInSeconds"] = max_wait_s if max_wait_s is not None else 2 * max_runtime_s
        # SageMaker copies /opt/ml/checkpoints here, and back into a job restarted after an interruption.
        request["CheckpointConfig"] = {
            "S3Uri": f"s3://{bucket}/{training_checkpoints_prefix(job_name)}",
            "LocalPath": CHECKPOINT_LOCAL_PATH,
        }
    return request


def _check_inputs(role_arn: str, bucket: str, job_name: str) -> None:
    if not _ROLE_ARN_RE.match(role_arn):
        raise SubmitError(f"--role-arn {role_arn!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
    if not _BUCKET_RE.match(bucket):
        raise SubmitError(f"--bucket {bucket!r} is not an S3 bucket name (a name, not an s3:// URI)")
    if not _JOB_NAME_RE.match(job_name):
        raise SubmitError(f"job name {job_name!r} must match [a-zA-Z0-9](-*[a-zA-Z0-9]){{0,62}}")


def submit(
    *,
    role_arn: str,
    bucket: str,
    train: str,
    validation: str | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    region: str | None = None,
    image: str | None = None,
    compute: Compute = DEFAULT_COMPUTE,
    job_name: str | None = None,
    start: bool = True,
    session: Any = None,
    log: Callable[[str], None] = print,
) -> Submission:
    """Upload the code (and local channels), then CreateTrainingJob. Returns without waiting.

    ``start=False`` stops before CreateTrainingJob: the code and data are in S3 and the request is
    built, for TrainingStateMachine to run (see ``execution_input``).
    """
    import boto3

    hp = dict(hyperparameters or {})
    check_hyperparameters(hp)
    hp["model_name"] = model_name(hp)  # sent explicitly: the tag, the job name and the job agree
    session = session or boto3.session.Session(region_name=region)
    region = region or session.region_name
    if not region:
        raise SubmitError("no region: pass --region or set AWS_REGION")
    name = job_name or default_job_name(hp["model_name"])
    _check_inputs(role_arn, bucket, name)
    compute.check()
    image = image or training_image(region)

    s3 = session.client("s3", region_name=region)
    channels = {"train": _upload_channel(s3, bucket, name, "train", train)}
    if validation:
        channels["validation"] = _upload_channel(s3, bucket, name, "validation", validation)
    for channel, uri in channels.items():
        log(f"channel {channel}: {uri}")
    source_key = training_source_key(name)
    s3.put_object(Bucket=bucket, Key=source_key, Body=package_source(), ContentType="application/gzip")
    source_uri = f"s3://{bucket}/{source_key}"
    log(f"source: {source_uri}")

    request = build_request(
        job_name=name,
        image=image,
        role_arn=role_arn,
        bucket=bucket,
        region=region,
        source_uri=source_uri,
        channels=channels,
        hyperparameters=hp,
        compute=compute,
    )
    if not start:
        return Submission(name, "", region, request, source_uri, channels)
    response = session.client("sagemaker", region_name=region).create_training_job(**request)
    log(f"training job {name} started on {compute.describe()} with {image}")
    return Submission(name, response["TrainingJobArn"], region, request, source_uri, channels)


def execution_input(request: Mapping[str, Any]) -> dict[str, Any]:
    """TrainingStateMachine's execution input for a built request (the template fixes role and output)."""
    if request.get("EnableManagedSpotTraining"):
        raise SubmitError("TrainingStateMachine runs on-demand instances: drop --spot")
    return {
        "job_name": request["TrainingJobName"],
        "image": request["AlgorithmSpecification"]["TrainingImage"],
        "instance_type": request["ResourceConfig"]["InstanceType"],
        "instance_count": request["ResourceConfig"]["InstanceCount"],
        "channels": request["InputDataConfig"],
        "hyperparameters": request["HyperParameters"],
        "metric_definitions": request["AlgorithmSpecification"]["MetricDefinitions"],
        "max_runtime_s": request["StoppingCondition"]["MaxRuntimeInSeconds"],
    }


def wait(
    job_name: str,
    *,
    session: Any = None,
    region: str | None = None,
    poll_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Poll DescribeTrainingJob until Completed, Failed or Stopped; log each change of status."""
    import boto3

    session = session or boto3.session.Session(region_name=region)
    client = session.client("sagemaker", region_name=region or session.region_name)
    seen: tuple[str, str] | None = None
    while True:
        job: dict[str, Any] = client.describe_training_job(TrainingJobName=job_name)
        status = (job["TrainingJobStatus"], job.get("SecondaryStatus", ""))
        if status != seen:
            log(f"{job_name}: {status[0]} ({status[1]})" if status[1] else f"{job_name}: {status[0]}")
            seen = status
        if status[0] in TERMINAL_STATES:
            break
        sleep(poll_s)
    if job.get("FailureReason"):
        log(f"failure reason: {job['FailureReason']}")
    return job
