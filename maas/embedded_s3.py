"""The embedded S3: moto's server on 127.0.0.1, with its objects kept on disk between commands.

moto keeps objects in memory, so this module snapshots every bucket into ``.maas/s3`` (blobs named
by sha256 plus an index) through the S3 API and loads them back into a fresh server. A server that
another ``maas`` command already runs is found through ``server.json`` and reused, so what one
command publishes the next one serves.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

LOCAL_REGION = "us-east-1"
# moto accepts any credentials; these only keep boto3 from searching for real ones.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "maas-local", "AWS_SECRET_ACCESS_KEY": "maas-local"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=1):  # noqa: S310 - loopback only
            return True
    except urllib.error.HTTPError:
        return True  # it answered: moto's status page fails (500) after a large multipart upload, the server is fine
    except OSError:
        return False


class EmbeddedS3:
    def __init__(self, root: Path, buckets: list[str]) -> None:
        self.root = root / "s3"
        self.blobs = self.root / "objects"
        self.index_path = self.root / "index.json"
        self.server_path = self.root / "server.json"
        self.buckets = buckets
        self.endpoint = ""
        self._server: Any = None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> EmbeddedS3:
        """Reuse a live server started by another maas command, else start one and load the snapshot."""
        self.blobs.mkdir(parents=True, exist_ok=True)
        if self.server_path.exists():
            endpoint = json.loads(self.server_path.read_text()).get("endpoint", "")
            if endpoint and _alive(endpoint):
                self.endpoint = endpoint
                self._ensure_buckets()
                return self
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log on the console

        port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._server.start()
        self.endpoint = f"http://127.0.0.1:{port}"
        self.server_path.write_text(json.dumps({"endpoint": self.endpoint, "pid": os.getpid()}))
        self.load()
        self._ensure_buckets()
        return self

    def stop(self) -> None:
        """Save, and stop the server if this process started it."""
        self.save()
        if self._server is not None:
            self._server.stop()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                self.server_path.unlink()

    def __enter__(self) -> EmbeddedS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def owns_server(self) -> bool:
        return self._server is not None

    def client_env(self) -> dict[str, str]:
        """Environment that points boto3 (in this or a child process) at the embedded S3."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ENDPOINT_URL_SQS": self.endpoint,  # moto's server answers every service on one port
            "AWS_DEFAULT_REGION": LOCAL_REGION,
            **LOCAL_CREDENTIALS,
        }

    def client(self, service: str = "s3") -> Any:
        import boto3

        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.endpoint,
            region_name=LOCAL_REGION,
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def _ensure_buckets(self) -> None:
        s3 = self.client()
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        for bucket in self.buckets:
            if bucket not in existing:
                s3.create_bucket(Bucket=bucket)

    # -- snapshot ------------------------------------------------------------------------
    def _read_index(self) -> dict[str, dict[str, Any]]:
        if not self.index_path.exists():
            return {}
        return dict(json.loads(self.index_path.read_text()))

    def save(self) -> int:
        """Write every object of every bucket to disk; returns the number of objects saved."""
        s3 = self.client()
        index: dict[str, dict[str, Any]] = {}
        for bucket in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
            index[bucket] = {}
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for obj in page.get("Contents", []):
                    response = s3.get_object(Bucket=bucket, Key=obj["Key"])
                    data = response["Body"].read()
                    digest = hashlib.sha256(data).hexdigest()
                    blob = self.blobs / digest
                    if not blob.exists():
                        tmp = blob.with_suffix(".tmp")
                        tmp.write_bytes(data)
                        tmp.replace(blob)
                    index[bucket][obj["Key"]] = {
                        "blob": digest,
                        "content_type": response.get("ContentType", "binary/octet-stream"),
                        "metadata": response.get("Metadata", {}),
                    }
        tmp_index = self.index_path.with_suffix(".tmp")
        tmp_index.write_text(json.dumps(index, indent=1, sort_keys=True))
        tmp_index.replace(self.index_path)
        live = {entry["blob"] for objects in index.values() for entry in objects.values()}
        for blob in self.blobs.iterdir():
            if blob.name not in live:
                blob.unlink()
        return sum(len(objects) for objects in index.values())

    def load(self) -> int:
        s3 = self.client()
        count = 0
        for bucket, objects in self._read_index().items():
            with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
                s3.create_bucket(Bucket=bucket)
            for key, entry in objects.items():
                s3.put_object(
                    Bucket=bucket,
                    Key=key,
                    Body=(self.blobs / entry["blob"]).read_bytes(),
                    ContentType=entry["content_type"],
                    Metadata=entry["metadata"],
                )
                count += 1
        return count
