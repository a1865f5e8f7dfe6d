"""The SageMaker training contract: where the job finds its data and config and leaves its results.

Follows aws/sagemaker-training-toolkit (``ENVIRONMENT_VARIABLES.md``): every path has an ``SM_*``
variable and a default under ``/opt/ml``. The root is overridable (``SM_ROOT`` or an argument) so
the same job runs on a laptop or in tests against a fake tree.

The cluster comes from ``<root>/input/config/resourceconfig.json`` (``current_host``, ``hosts``,
``network_interface_name``), which SageMaker writes on every instance of the job, with the
toolkit's ``SM_HOSTS`` (a JSON list), ``SM_CURRENT_HOST`` and ``SM_NUM_GPUS`` over it; without
either, the job is one host, ``local``.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_ROOT = "/opt/ml"
LOCAL_HOST = "local"
# SageMaker keeps the first 1024 characters of the failure file as the job's FailureReason.
FAILURE_REASON_CHARS = 1024


@dataclass(frozen=True)
class TrainingEnv:
    root: Path
    model_dir: Path
    output_data_dir: Path
    channels: dict[str, Path] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    job_name: str = ""
    instance_type: str = "local"
    hosts: tuple[str, ...] = (LOCAL_HOST,)  # every instance of the job, in SageMaker's order
    current_host: str = LOCAL_HOST
    num_gpus: int = 0

    @property
    def failure_file(self) -> Path:
        return self.root / "output" / "failure"


def decode_value(raw: Any) -> Any:
    """SageMaker writes each hyperparameter as a JSON-encoded string ("\\"10\\"" or "10"); undo that."""
    value = raw
    # Twice at most: a value may arrive JSON-encoded once (10 -> "10") or twice (10 -> "\"10\"").
    for _ in range(2):
        if not isinstance(value, str):
            break
        try:
            value = json.loads(value)
        except ValueError:
            break
    return value


def _config_file(root: Path, name: str) -> dict[str, Any]:
    """``<root>/input/config/<name>``, a JSON object SageMaker writes; empty when it is not there."""
    path = root / "input" / "config" / name
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def read_hyperparameters(root: Path, environ: Mapping[str, str]) -> dict[str, Any]:
    """hyperparameters.json, then ``SM_HP_<NAME>`` variables over it; names normalised to snake_case."""
    data = _config_file(root, "hyperparameters.json")
    found: dict[str, Any] = {str(k): decode_value(v) for k, v in data.items()}
    for key, value in environ.items():
        if key.startswith("SM_HP_"):
            found[key[len("SM_HP_") :].lower()] = decode_value(value)
    return {k.replace("-", "_"): v for k, v in found.items()}


def read_cluster(root: Path, environ: Mapping[str, str]) -> tuple[tuple[str, ...], str]:
    """(hosts, current host): resourceconfig.json, then ``SM_HOSTS`` / ``SM_CURRENT_HOST`` over it."""
    config = _config_file(root, "resourceconfig.json")
    hosts: Any = config.get("hosts")
    if environ.get("SM_HOSTS"):
        try:
            hosts = json.loads(environ["SM_HOSTS"])
        except ValueError as exc:
            raise ValueError(f"SM_HOSTS must be a JSON list of host names, got {environ['SM_HOSTS']!r}") from exc
    current = environ.get("SM_CURRENT_HOST") or config.get("current_host")
    if hosts is None and current is None:
        return (LOCAL_HOST,), LOCAL_HOST
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) and h for h in hosts):
        raise ValueError(f"the job's hosts must be a non-empty list of host names, got {hosts!r}")
    if len(set(hosts)) != len(hosts) or current not in hosts:
        raise ValueError(f"the current host {current!r} must be one of the distinct hosts {hosts}")
    return tuple(hosts), str(current)


def read_env(root: str | Path | None = None, environ: Mapping[str, str] | None = None) -> TrainingEnv:
    """Read the contract from the environment; ``root`` (or ``SM_ROOT``) replaces ``/opt/ml``."""
    env = os.environ if environ is None else environ
    base = Path(root or env.get("SM_ROOT") or DEFAULT_ROOT)
    channels = {"train": Path(env.get("SM_CHANNEL_TRAIN") or base / "input" / "data" / "train")}
    validation = env.get("SM_CHANNEL_VALIDATION")
    default_validation = base / "input" / "data" / "validation"
    if validation:
        channels["validation"] = Path(validation)
    elif default_validation.is_dir():
        channels["validation"] = default_validation
    hosts, current_host = read_cluster(base, env)
    return TrainingEnv(
        root=base,
        model_dir=Path(env.get("SM_MODEL_DIR") or base / "model"),
        output_data_dir=Path(env.get("SM_OUTPUT_DATA_DIR") or base / "output" / "data"),
        channels=channels,
        hyperparameters=read_hyperparameters(base, env),
        job_name=env.get("TRAINING_JOB_NAME") or local_job_id(),
        instance_type=env.get("SM_CURRENT_INSTANCE_TYPE") or "local",
        hosts=hosts,
        current_host=current_host,
        num_gpus=int(env.get("SM_NUM_GPUS") or 0),
    )


def local_job_id() -> str:
    return f"local-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def failure_reason(exc: BaseException) -> str:
    reason = f"{type(exc).__name__}: {exc}"
    return reason[:FAILURE_REASON_CHARS]


def write_failure(root: str | Path, exc: BaseException) -> Path:
    """Write the failure file SageMaker reports, and the full traceback to stderr (CloudWatch)."""
    traceback.print_exception(exc, file=sys.stderr)
    path = Path(root) / "output" / "failure"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(failure_reason(exc) + "\n")
    print(f"training failed: {failure_reason(exc)}", file=sys.stderr, flush=True)
    return path
