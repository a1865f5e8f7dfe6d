"""The local stack: template.yaml, the embedded S3 and local Lambda containers, wired together."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from maas.embedded_s3 import EmbeddedS3
from maas.lambda_runtime import LocalFunction
from maas.paths import project_root, state_dir
from maas.template import Template


def load_template(path: str | None = None) -> Template:
    return Template(Path(path) if path else project_root() / "template.yaml")


@contextlib.contextmanager
def s3_for(template: Template) -> Iterator[dict[str, str]]:
    """Environment that points boto3 at S3: a configured endpoint or AWS, else the embedded S3.

    ``AWS_ENDPOINT_URL_S3`` or ``AWS_PROFILE`` in the environment means "use that"; otherwise the
    embedded S3 is started (or reused) for the duration and saved to disk afterwards.
    """
    if os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_PROFILE"):
        yield {}
        return
    with EmbeddedS3(state_dir(), template.bucket_names()) as s3:
        yield s3.client_env()


@contextlib.contextmanager
def local_functions(
    template: Template, names: list[str], s3_env: dict[str, str], log: IO[str] | None = None
) -> Iterator[list[LocalFunction]]:
    functions = [LocalFunction(template.function(name), s3_env, log=log) for name in names]
    try:
        for fn in functions:
            fn.start()
        yield functions
    finally:
        for fn in functions:
            fn.stop()
