"""`maas train local`: run the training job under the SageMaker container contract on this machine.

A local ``/opt/ml`` tree is laid out under ``.maas/opt_ml`` (channels, hyperparameters.json, model
and output folders), and ``python -m training.job`` runs in a child process with the ``SM_*``
variables SageMaker would set. The job publishes to the registry bucket it is given.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from maas import console
from maas_core.shared.manifest import Manifest


def _s3(env: dict[str, str]) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=env.get("AWS_ENDPOINT_URL_S3"),  # None: AWS, with the usual credential chain
        region_name=env.get("AWS_DEFAULT_REGION"),
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
    )


def fetch_s3_channel(uri: str, folder: Path, env: dict[str, str]) -> int:
    """Copy every object under an s3:// prefix into the channel folder, as SageMaker's File mode does."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    s3 = _s3(env)
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            relative = obj["Key"][len(prefix) :].lstrip("/")
            if not relative or relative.endswith("/") or ".." in relative.split("/"):
                continue
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(target))
            count += 1
    if count == 0:
        raise SystemExit(f"maas: nothing under {uri}; a channel needs at least one file")
    return count


def layout(
    root: Path, data: Path | str | None, hyperparameters: dict[str, Any], env: dict[str, str] | None = None
) -> dict[str, str]:
    """Create the /opt/ml tree and return the environment SageMaker would give the job.

    ``data`` is a folder, a file or an ``s3://`` prefix (read through ``env``'s S3 endpoint, if any).
    """
    if root.exists():
        shutil.rmtree(root)
    train = root / "input" / "data" / "train"
    train.mkdir(parents=True)
    if data is None:
        from training.families import DEFAULT_FAMILY, family

        family(str(hyperparameters.get("family", DEFAULT_FAMILY))).write_example(train)
    elif str(data).startswith("s3://"):
        fetch_s3_channel(str(data), train, env or {})
    elif (data := Path(data)).is_dir():
        shutil.copytree(data, train, dirs_exist_ok=True)
    else:
        shutil.copy2(data, train / data.name)
    config = root / "input" / "config"
    config.mkdir(parents=True)
    # SageMaker writes every hyperparameter value as a JSON-encoded string.
    (config / "hyperparameters.json").write_text(json.dumps({k: json.dumps(v) for k, v in hyperparameters.items()}))
    for folder in ("model", "output/data"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    return {
        "SM_ROOT": str(root),
        "SM_MODEL_DIR": str(root / "model"),
        "SM_CHANNEL_TRAIN": str(train),
        "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
        "SM_CHANNELS": json.dumps(["train"]),
        "SM_CURRENT_INSTANCE_TYPE": "local",
        "TRAINING_JOB_NAME": f"maas-local-{time.strftime('%Y%m%d-%H%M%S')}",
    }


def run_job(root: Path, data: Path | str | None, hyperparameters: dict[str, Any], env: dict[str, str]) -> int:
    """The job in a child process; its output passes through maas.console (the libraries' noise left
    out of its stderr, its epochs condensed) unless ``--verbose``."""
    job_env = {**os.environ, **layout(root, data, hyperparameters, env), **env}
    job_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    job_env["PYTHONUNBUFFERED"] = "1"  # its lines as they come, through the pipes
    process = subprocess.Popen(
        [sys.executable, "-m", "training.job"], env=job_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    with console.filtered(process.stderr), console.job_output(process.stdout):
        code = process.wait()
    published = root / "output" / "data" / "published.json"
    if code == 0 and env.get("MAAS_MODEL_BUCKET") and published.exists():
        promote_first_version(env["MAAS_MODEL_BUCKET"], Manifest.from_json(json.loads(published.read_text())), env)
    return code


def promote_first_version(bucket: str, manifest: Manifest, env: dict[str, str]) -> None:
    """Point the production alias at a model's first version, as `maas models promote` would.

    The job itself only adds versions (its role may not write aliases, ARCHITECTURE.md); this runs
    with the developer's own credentials, and only when the model has no production alias yet.
    """
    from maas_core.shared.errors import AliasConflict
    from maas_core.shared.registry import DEFAULT_ALIAS, Registry

    console.quiet_onnxruntime()  # setting an alias loads the version in onnxruntime here
    registry = Registry(bucket, s3=_s3(env))
    name, version = manifest.name, manifest.version
    if DEFAULT_ALIAS in registry.list_aliases(name):
        print(f"{DEFAULT_ALIAS} alias unchanged; promote with `maas models promote {name} {version}`")
        return
    try:
        registry.set_alias(
            name, DEFAULT_ALIAS, version, expected_etag=None, actor="maas train local", reason="first version"
        )
    except AliasConflict:
        return  # another command set it first; theirs stands
    print(f"{DEFAULT_ALIAS} alias: {name} -> {version} (its first version)")
