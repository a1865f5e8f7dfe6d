"""Shared fixtures: a real digits classifier as ONNX, a moto-backed registry, Lambda-like env."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from tests_support import HANDLER_ENV, build_digits_onnx, digits_manifest

# The handler reads its configuration at import, as it does on Lambda; give it the template's names.
os.environ.update(HANDLER_ENV)
# Lambda's /tmp starts empty: so does this run's, or verified model files an earlier run left (kept by
# sha256) would be served instead of downloaded.
_TMP = tempfile.mkdtemp(prefix="maas-tests-tmp-")
os.environ["OPTIMIZED_MODEL_DIR"] = os.path.join(_TMP, "maas-models")
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
for _var in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
    os.environ.pop(_var, None)

BUCKET = os.environ["MODEL_BUCKET"]


@pytest.fixture
def make_manifest() -> Any:
    return digits_manifest


@pytest.fixture(scope="session")
def digits_onnx() -> bytes:
    return build_digits_onnx()


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A moto S3 (no network) with the model bucket, and shared.aws's cached client reset around it."""
    import boto3
    from moto import mock_aws

    from maas_core.shared.aws import s3_client

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    s3_client.cache_clear()
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client
    s3_client.cache_clear()


@pytest.fixture
def registry(s3: Any) -> Any:
    from maas_core.shared.registry import Registry

    return Registry(BUCKET, s3)


@pytest.fixture
def published(registry: Any, digits_onnx: bytes) -> dict[str, Any]:
    """The digits model published once: production points at it."""
    return registry.publish("digits", digits_onnx, digits_manifest())
