"""The local stack: template.yaml, the embedded S3 and local Lambda containers, wired together."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from maas.console import Refused, verbose
from maas.embedded_s3 import EmbeddedS3
from maas.lambda_runtime import LocalFunction
from maas.paths import project_root, state_dir
from maas.template import Template


def load_template(path: str | None = None, env_vars: str | None = None) -> Template:
    """template.yaml, with ``--env-vars`` overrides in sam local's format when a file is given."""
    overrides = json.loads(Path(env_vars).read_text()) if env_vars else None
    return Template(Path(path) if path else project_root() / "template.yaml", env_vars=overrides)


@contextlib.contextmanager
def s3_for(template: Template) -> Iterator[dict[str, str]]:
    """Environment that points boto3 at S3: a configured endpoint or AWS, else the embedded S3.

    ``AWS_ENDPOINT_URL_S3`` or ``AWS_PROFILE`` in the environment means "use that"; otherwise the
    embedded S3 is started (or reused) for the duration and saved to disk afterwards.
    """
    with embedded_s3(template) as s3:
        yield s3.client_env() if s3 else {}


@contextlib.contextmanager
def embedded_s3(template: Template) -> Iterator[EmbeddedS3 | None]:
    """The embedded S3 (started or reused) for the duration; None where a configured S3 is used."""
    if os.environ.get("AWS_ENDPOINT_URL_S3"):
        check_answers(os.environ["AWS_ENDPOINT_URL_S3"])
    if os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_PROFILE"):
        yield None
        return
    with EmbeddedS3(state_dir(), template.bucket_names()) as s3:
        yield s3


@contextlib.contextmanager
def local_functions(
    template: Template, names: list[str], s3_env: dict[str, str], log: IO[str] | None = None
) -> Iterator[list[LocalFunction]]:
    functions = [LocalFunction(template.function(name), s3_env, log=log, verbose=verbose()) for name in names]
    try:
        for fn in functions:
            fn.start()
        yield functions
    finally:
        for fn in functions:
            fn.stop()


def check_answers(endpoint: str, timeout_s: float = 3.0) -> None:
    """A configured S3 endpoint that accepts no connection is said at once, in one line, not after
    boto3's retries as a registry error."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=timeout_s).close()
    except OSError as err:
        raise Refused(
            f"the S3 endpoint {endpoint} (AWS_ENDPOINT_URL_S3) does not answer ({err.strerror or err}); "
            "start it, or unset AWS_ENDPOINT_URL_S3 to use the embedded S3"
        ) from None


def local_client(env: dict[str, str], service: str) -> Any:
    """A boto3 client for the embedded services described by ``env`` (from ``s3_for``)."""
    import boto3

    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=env["AWS_ENDPOINT_URL_S3"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


@contextlib.contextmanager
def queue_consumers(template: Template, s3_env: dict[str, str], log: IO[str] | None = None) -> Iterator[list[str]]:
    """Every function with an SQS event, running and fed by its queue (embedded services only).

    The template's queues and bucket notifications are created on the embedded server first, and a
    variable that is ``!Ref`` to a queue gets that queue's local URL. When the queues are new (a fresh
    server), files under a notified prefix without a finished summary are announced again.
    """
    from maas.local_queues import missing_queues, pollers, reannounce, setup

    names = [n for n in template.function_ids() if template.function(n).queues]
    if not names or "AWS_ENDPOINT_URL_SQS" not in s3_env:
        yield []
        return
    sqs, s3 = local_client(s3_env, "sqs"), local_client(s3_env, "s3")
    timeout = max(template.function(n).timeout for n in names)
    new_queues = missing_queues(template, sqs)
    urls = setup(template, sqs, s3, timeout)
    # Queues live in the server's memory: new ones mean the messages of files put before are gone.
    reannounce(template, sqs, s3, urls, new_queues, log or sys.stderr)
    queue_env = {var: urls[ref] for n in names for var, ref in template.function(n).env_refs.items() if ref in urls}
    with (
        local_functions(template, names, {**s3_env, **queue_env}, log=log) as functions,
        pollers(functions, sqs, urls),
    ):
        yield names


class Serving:
    """This project's start-api: an exclusive lock on ``api.lock`` in the state folder for as long as it
    serves, and ``api.json`` saying which process serves where, for the next start-api to say."""

    GRACE_S = 1.0  # a stack told to stop releases the lock within this (it retires first)

    def __init__(self, state: Path) -> None:
        self.info = state / "api.json"
        self._lock: IO[str] | None = (state / "api.lock").open("w")
        self._held = False

    def acquire(self) -> Serving:
        import fcntl
        import time

        assert self._lock is not None
        deadline = time.monotonic() + self.GRACE_S
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._held = True
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        self.release()
        try:
            running = json.loads(self.info.read_text())
        except (OSError, ValueError):
            running = {}
        where = f" on {running['url']}" if running.get("url") else ""
        raise Refused(
            f"this project is already served by process {running.get('pid', '?')}{where}; stop it first "
            "(Ctrl-C there, or kill that pid), or give a second stack its own MAAS_STATE_DIR"
        )

    def announce(self, url: str) -> None:
        self.info.write_text(json.dumps({"pid": os.getpid(), "url": url}))

    def release(self) -> None:
        """The API has stopped: the next start-api may start (it waits for the S3 server to stop)."""
        if self._lock is not None:
            if self._held:  # api.json is the holder's to remove
                with contextlib.suppress(FileNotFoundError):
                    self.info.unlink()
            self._lock.close()
            self._lock = None


@contextlib.contextmanager
def serving(state: Path) -> Iterator[Serving]:
    project = Serving(state).acquire()
    try:
        yield project
    finally:
        project.release()
