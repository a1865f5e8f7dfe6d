"""The embedded S3: moto's server on 127.0.0.1, its objects written through to disk as they change.

moto keeps objects in memory. The server runs here behind a WSGI middleware that, once a request that
changes an object (put, copy, complete multipart upload, delete, multi-delete) has succeeded in moto,
writes the object to ``.maas/s3`` before the client gets its response, so a SIGKILL at any moment
loses no write a client was told had happened (ARCHITECTURE.md, "Local, without Docker").

On disk: ``objects/<sha256>`` holds each distinct body once; ``keys/<bucket>/<sha256 of key>.json``
holds one object's record (key, blob, ETag, metadata, last modified), so a write replaces one small
file atomically (temporary file, fsync, rename) and never rewrites an index of everything. A fresh
server loads the records straight into moto's backend (ETags and dates kept, no notifications sent).
A server that another ``maas`` command already runs is found through ``server.json`` and reused, when
it answers and the process that started it is alive. An owner that is stopping first retires its
server: it removes ``server.json`` and holds the start lock until the server is down, so a command
started meanwhile waits, then loads the store the stopped server left, whole.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, unquote, urlsplit

from maas.ports import free_port  # noqa: F401 - its old home: bench/ and tests import it from here

LOCAL_REGION = "us-east-1"
# moto accepts any credentials; these only keep boto3 from searching for real ones.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "maas-local", "AWS_SECRET_ACCESS_KEY": "maas-local"}
# The service a SigV4 request is signed for: ".../<date>/<region>/<service>/aws4_request".
_SIGNED_FOR = re.compile(r"/\d{8}/[\w-]+/([\w-]+)/aws4_request")


def _alive(endpoint: str) -> bool:
    try:  # moto's dashboard: a static page, cheap however much the server holds
        with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):  # noqa: S310 - loopback only
            return True
    except urllib.error.HTTPError:
        return True  # it answered
    except OSError:
        return False


def _owner_alive(pid: object) -> bool:
    """Whether the process that started a server still runs: a server that answers for a dead owner is
    not ours (another program took its port), and a stale server.json names a pid that has exited."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    """Either the old file or the whole new one survives a crash, never a torn one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


class DiskStore:
    """The objects of the embedded S3 on disk: content-addressed blobs plus one record per key."""

    def __init__(self, root: Path) -> None:
        self.blobs = root / "objects"
        self.keys = root / "keys"
        self.legacy_index = root / "index.json"  # the snapshot format before write-through

    def _bucket_dir(self, bucket: str) -> Path:
        if not bucket or "/" in bucket or bucket.startswith("."):
            raise ValueError(f"not a bucket name: {bucket!r}")
        return self.keys / bucket

    def record_path(self, bucket: str, key: str) -> Path:
        return self._bucket_dir(bucket) / f"{hashlib.sha256(key.encode()).hexdigest()}.json"

    def read_record(self, bucket: str, key: str) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.record_path(bucket, key).read_text()))
        except FileNotFoundError:
            return None

    def add_bucket(self, bucket: str) -> None:
        folder = self._bucket_dir(bucket)
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            _fsync_dir(self.keys)

    def remove_bucket(self, bucket: str) -> None:
        shutil.rmtree(self._bucket_dir(bucket), ignore_errors=True)

    def put(self, bucket: str, key: str, body: bytes, etag: str, metadata: dict[str, str], modified: str) -> None:
        """The blob first, then the record that names it: a crash between leaves only an unused blob."""
        digest = hashlib.sha256(body).hexdigest()
        blob = self.blobs / digest
        if not blob.exists():  # written by rename, so a blob that exists is whole
            self.blobs.mkdir(parents=True, exist_ok=True)
            _write_atomic(blob, body)
        self.add_bucket(bucket)
        record = {"key": key, "blob": digest, "etag": etag, "metadata": metadata, "last_modified": modified}
        _write_atomic(self.record_path(bucket, key), json.dumps(record, sort_keys=True).encode())

    def delete(self, bucket: str, key: str) -> None:
        path = self.record_path(bucket, key)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            _fsync_dir(path.parent)

    def buckets(self) -> list[str]:
        return sorted(p.name for p in self.keys.iterdir() if p.is_dir()) if self.keys.is_dir() else []

    def records(self, bucket: str) -> Iterator[dict[str, Any]]:
        for path in sorted(self._bucket_dir(bucket).glob("*.json")):
            yield dict(json.loads(path.read_text()))

    def blob(self, digest: str) -> bytes:
        return (self.blobs / digest).read_bytes()

    def migrate_legacy_index(self) -> None:
        """Turn the old all-in-one index.json into records, then remove it (its blobs are the same)."""
        if not self.legacy_index.exists():
            return
        for bucket, objects in json.loads(self.legacy_index.read_text()).items():
            self.add_bucket(bucket)
            for key, entry in objects.items():
                metadata = {"Content-Type": entry["content_type"]}
                metadata.update({f"x-amz-meta-{k}": v for k, v in entry["metadata"].items()})
                body = self.blob(entry["blob"])
                self.put(bucket, key, body, hashlib.md5(body).hexdigest(), metadata, "")  # noqa: S324 - S3's ETag
        self.legacy_index.unlink()

    def collect_garbage(self) -> int:
        """Remove blobs no record names and temporary files a crash left; only while nothing writes."""
        live = {r["blob"] for b in self.buckets() for r in self.records(b)}
        removed = 0
        for folder in (self.blobs, self.keys, *(self.keys / b for b in self.buckets())):
            for path in folder.iterdir() if folder.is_dir() else []:
                if path.name.endswith(".tmp") or (folder == self.blobs and path.name not in live):
                    path.unlink()
                    removed += 1
        return removed


def _s3_backend() -> Any:
    """moto's S3 state in this process (the server runs in a thread here); every local client is
    moto's default account, since no IAM user is ever made."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]


class WriteThrough:
    """WSGI middleware: after a successful S3 request that changes objects, bring the disk in line
    with moto's state for them, before the response leaves. A disk failure turns the response into a
    503 (boto3 retries it), so no client is told of a write that was not kept."""

    def __init__(self, app: Callable[..., Iterable[bytes]], store: DiskStore) -> None:
        self.app, self.store = app, store
        self._locks = [threading.Lock() for _ in range(64)]  # per key (striped): syncs of one key in order

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = mutation(environ)
        if target is None:
            return self.app(environ, start_response)
        # The status and headers are held back until the disk has the write, then passed on (or a 503).
        held: list[tuple[str, list[tuple[str, str]], Any]] = []

        def hold(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], Any]:
            held.append((code, headers, exc_info))
            return lambda data: start_response(code, headers, exc_info)(data)

        body = self.app(environ, hold)
        code, headers, exc_info = held[-1]
        if code.startswith("2"):
            try:
                self.sync(*target)
            except Exception as exc:
                if hasattr(body, "close"):
                    body.close()
                sys.stderr.write(f"[s3] could not keep {target[:2]} on disk: {exc.__class__.__name__}: {exc}\n")
                start_response("503 Service Unavailable", [("Content-Type", "application/xml")])
                return [
                    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>ServiceUnavailable</Code>"
                    b"<Message>the embedded S3 could not write to its disk store</Message></Error>"
                ]
        start_response(code, headers, exc_info)
        return body

    def _lock(self, bucket: str, key: str) -> threading.Lock:
        return self._locks[hash((bucket, key)) % len(self._locks)]

    def sync(self, bucket: str, key: str | None, reconcile: bool = False) -> None:
        from moto.s3.exceptions import MissingBucket

        backend = _s3_backend()
        try:
            moto_bucket = backend.get_bucket(bucket)
        except MissingBucket:
            self.store.remove_bucket(bucket)  # deleted (moto deletes empty buckets only)
            return
        self.store.add_bucket(bucket)
        if key is not None:
            self.sync_key(backend, bucket, key)
        elif reconcile:  # a multi-delete: drop the records of keys moto no longer has
            for record in list(self.store.records(bucket)):
                if record["key"] not in moto_bucket.keys:
                    self.sync_key(backend, bucket, record["key"])

    def sync_key(self, backend: Any, bucket: str, key: str) -> None:
        with self._lock(bucket, key):  # reads moto's state now, so the last sync to run writes the latest
            obj = backend.get_object(bucket, key)
            if obj is None:  # deleted (or a delete marker)
                self.store.delete(bucket, key)
                return
            etag, metadata, modified = obj.etag.strip('"'), dict(obj.metadata), obj.last_modified.isoformat()
            known = self.store.read_record(bucket, key)
            if known and (known["etag"], known["metadata"], known["last_modified"]) == (etag, metadata, modified):
                return  # a request that changed no object (tagging, ACL, a repeated sync)
            self.store.put(bucket, key, obj.value, etag, metadata, modified)


def mutation(environ: dict[str, Any]) -> tuple[str, str | None, bool] | None:
    """(bucket, key or None, is a multi-delete) of an S3 request that may change objects, else None.

    Path-style addressing only: boto3 and the AWS CLI use it for an endpoint on 127.0.0.1. Parts of
    a multipart upload change no object until the upload is completed (a POST with uploadId)."""
    method = environ.get("REQUEST_METHOD", "GET")
    if method not in ("PUT", "POST", "DELETE"):
        return None
    signed = _SIGNED_FOR.search(environ.get("HTTP_AUTHORIZATION", "") + unquote(environ.get("QUERY_STRING", "")))
    if (signed and signed.group(1) != "s3") or (not signed and environ.get("HTTP_X_AMZ_TARGET")):
        return None  # SQS and the other services moto's server answers on the same port
    raw = environ.get("RAW_URI") or environ.get("PATH_INFO", "")
    url = urlsplit(raw.encode("latin-1").decode("utf-8", "replace"))
    bucket, _, key = url.path.lstrip("/").partition("/")
    if not bucket or bucket == "moto-api":
        return None
    query = parse_qs(url.query, keep_blank_values=True)
    if not key:
        return bucket, None, method == "POST" and "delete" in query
    if "uploads" in query or ("uploadId" in query and method != "POST"):
        return None  # create, upload a part of, or abort a multipart upload
    return bucket, unquote(key), False


def load_into_moto(store: DiskStore) -> int:
    """Put every record on disk into moto's backend directly: ETags and dates stay as they were, and
    no notification goes out (the files were announced, or re-announced, by their queue's consumer)."""
    store.migrate_legacy_index()
    backend = _s3_backend()
    count = 0
    for bucket in store.buckets():
        if bucket not in backend.buckets:
            backend.create_bucket(bucket, LOCAL_REGION)
        for record in store.records(bucket):
            key = backend.put_object(
                bucket, record["key"], store.blob(record["blob"]), etag=record["etag"], disable_notification=True
            )
            key.set_metadata(dict(record["metadata"]))
            if record["last_modified"]:
                key.last_modified = datetime.fromisoformat(record["last_modified"])
            count += 1
    store.collect_garbage()
    return count


class _Server:
    """moto's ThreadedMotoServer, with the write-through middleware around its WSGI app."""

    def __init__(self, store: DiskStore) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        app = WriteThrough(DomainDispatcherApplication(create_backend_app), store)
        # Port 0: the kernel's choice, bound at once, so no port checked free can be taken meanwhile.
        self._server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
        self.port = int(self._server.server_port)
        # A short poll: shutdown() waits for the loop to look, and a stack stops in a fraction of a second.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="embedded-s3"
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()


class EmbeddedS3:
    def __init__(self, root: Path, buckets: list[str]) -> None:
        self.root = root / "s3"
        self.store = DiskStore(self.root)
        self.server_path = self.root / "server.json"
        self.buckets = buckets
        self.endpoint = ""
        self._server: _Server | None = None
        self._retired: IO[str] | None = None  # the start lock, held from retire() to stop()

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> EmbeddedS3:
        """Reuse a live server started by another maas command, else load the store and start one.

        The check and the start happen under a lock file, so two commands starting at once share one
        server instead of writing the same store from two."""
        import logging

        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "start.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if self.server_path.exists():
                running = json.loads(self.server_path.read_text())
                endpoint = running.get("endpoint", "")
                if endpoint and _owner_alive(running.get("pid")) and _alive(endpoint):
                    self.endpoint = endpoint
                    self._ensure_buckets()
                    return self
            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log on the console
            load_into_moto(self.store)
            self._server = _Server(self.store)
            self._server.start()
            self.endpoint = f"http://127.0.0.1:{self._server.port}"
            self._ensure_buckets()
            _write_atomic(self.server_path, json.dumps({"endpoint": self.endpoint, "pid": os.getpid()}).encode())
        return self

    def retire(self) -> None:
        """The first step of stopping a server this process started: no command reuses it from now on.

        server.json goes and the start lock is held until stop(), so a command that starts meanwhile
        waits for the server to be down instead of reusing one about to vanish (its first requests
        would fail) or loading the store while this server still writes to it."""
        if self._server is None or self._retired is not None:
            return
        self._retired = (self.root / "start.lock").open("w")
        fcntl.flock(self._retired, fcntl.LOCK_EX)
        with contextlib.suppress(FileNotFoundError):
            self.server_path.unlink()

    def stop(self) -> None:
        """Stop the server if this process started it; every write is on disk already."""
        if self._server is None:
            return
        self.retire()
        try:
            self._server.stop()
            self._server = None
        finally:
            if self._retired is not None:
                self._retired.close()  # releases the start lock
                self._retired = None

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
