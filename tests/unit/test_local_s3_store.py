"""The embedded S3's disk store: written through by the middleware before each response, loadable
after a crash at any point, and loaded back with ETags and metadata intact.

Requests go to moto's real WSGI app through werkzeug's test client (SigV4-signed as boto3 signs
them), so no socket is opened; the crash-and-restart of a real server process is in
tests/integration/test_local_crash_s3.py."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from maas.embedded_s3 import DiskStore, WriteThrough, load_into_moto, mutation

BUCKET = "maas-store-test"
HOST = "127.0.0.1:5000"


@pytest.fixture
def store(tmp_path: Path) -> DiskStore:
    return DiskStore(tmp_path / "s3")


@pytest.fixture
def moto_state() -> Iterator[None]:
    """moto's in-process S3 backend, empty before and after (mock_aws resets it)."""
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture
def app(store: DiskStore, moto_state: None) -> Any:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    return WriteThrough(DomainDispatcherApplication(create_backend_app), store)


def request(app: Any, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Any:
    """One S3 request, signed as boto3 signs it, through the middleware and moto's app."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from werkzeug.test import Client

    signed = AWSRequest(method=method, url=f"http://{HOST}{path}", data=body, headers=headers or {})
    S3SigV4Auth(Credentials("maas-local", "maas-local"), "s3", "us-east-1").add_auth(signed)
    return Client(app).open(path, method=method, data=body, headers=dict(signed.headers.items()))


def test_a_put_is_on_disk_when_its_response_comes_and_a_delete_removes_it(app, store):
    assert request(app, "PUT", f"/{BUCKET}").status_code == 200
    response = request(app, "PUT", f"/{BUCKET}/batch/in/a%20b+c.jsonl", b'{"x": 1}\n', {"Content-Type": "text/plain"})
    assert response.status_code == 200
    record = store.read_record(BUCKET, "batch/in/a b+c.jsonl")
    assert record is not None and record["etag"] == response.headers["ETag"].strip('"')
    assert store.blob(record["blob"]) == b'{"x": 1}\n' and record["metadata"]["content-type"] == "text/plain"
    assert request(app, "DELETE", f"/{BUCKET}/batch/in/a%20b+c.jsonl").status_code == 204
    assert store.read_record(BUCKET, "batch/in/a b+c.jsonl") is None


def test_a_multi_delete_removes_every_deleted_key_from_disk(app, store):
    request(app, "PUT", f"/{BUCKET}")
    for key in ("a", "b", "c"):
        request(app, "PUT", f"/{BUCKET}/{key}", key.encode())
    body = b"<Delete><Object><Key>a</Key></Object><Object><Key>b</Key></Object></Delete>"
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()  # S3 asks for the body's MD5
    assert request(app, "POST", f"/{BUCKET}?delete", body, {"Content-MD5": md5}).status_code == 200
    assert [r["key"] for r in store.records(BUCKET)] == ["c"]


def test_a_refused_write_leaves_the_disk_as_it_was(app, store):
    request(app, "PUT", f"/{BUCKET}")
    request(app, "PUT", f"/{BUCKET}/alias.json", b"v1")
    before = store.read_record(BUCKET, "alias.json")
    # A compare-and-swap that loses (as a promote racing another does) changes nothing.
    response = request(app, "PUT", f"/{BUCKET}/alias.json", b"v2", {"If-Match": '"not-the-etag"'})
    assert response.status_code == 412
    assert store.read_record(BUCKET, "alias.json") == before


def test_a_disk_failure_is_a_503_not_a_success_the_disk_never_saw(app, store, monkeypatch):
    request(app, "PUT", f"/{BUCKET}")

    def full(*_: Any, **__: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "put", full)
    response = request(app, "PUT", f"/{BUCKET}/model.onnx", b"weights")
    assert response.status_code == 503 and b"<Code>ServiceUnavailable</Code>" in response.data
    monkeypatch.undo()  # the disk has room again: boto3's retry of the same put is kept
    assert request(app, "PUT", f"/{BUCKET}/model.onnx", b"weights").status_code == 200
    assert store.read_record(BUCKET, "model.onnx") is not None


def test_the_store_loads_back_with_etags_metadata_and_dates(app, store):
    request(app, "PUT", f"/{BUCKET}")
    request(app, "PUT", f"/{BUCKET}/m.json", b"{}", {"Content-Type": "application/json", "x-amz-meta-who": "me"})
    kept = store.read_record(BUCKET, "m.json")
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    s3_backends[DEFAULT_ACCOUNT_ID]["aws"].reset()  # what a killed server leaves: nothing in memory
    assert load_into_moto(store) == 1
    response = request(app, "HEAD", f"/{BUCKET}/m.json")
    assert response.headers["ETag"].strip('"') == kept["etag"]
    assert response.headers["Content-Type"] == "application/json" and response.headers["x-amz-meta-who"] == "me"


def test_a_multipart_etag_survives_a_reload(store, moto_state):
    """Batch output keys carry the input's ETag: a reload must not turn "<md5>-2" into a plain MD5."""
    store.put(BUCKET, "batch/in/digits/production/big.jsonl", b"rows", "0123abcd-2", {}, "")
    load_into_moto(store)
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    key = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_object(BUCKET, "batch/in/digits/production/big.jsonl")
    assert key.etag == '"0123abcd-2"' and key.value == b"rows"


def test_what_a_crash_leaves_half_written_is_ignored_and_cleaned(store, moto_state):
    store.put(BUCKET, "kept", b"kept", "etag1", {}, "")
    bucket_dir = store.record_path(BUCKET, "kept").parent
    # Killed mid-write: a temporary record and a blob no record names yet.
    (bucket_dir / ".abc.tmp").write_text('{"key": "torn')
    (store.blobs / hashlib.sha256(b"orphan").hexdigest()).write_bytes(b"orphan")
    (store.blobs / ".def.tmp").write_bytes(b"half")
    assert load_into_moto(store) == 1
    assert sorted(p.name for p in store.blobs.iterdir()) == [hashlib.sha256(b"kept").hexdigest()]
    assert [p.name for p in bucket_dir.iterdir()] == [store.record_path(BUCKET, "kept").name]


def test_the_snapshot_index_of_earlier_versions_is_migrated(store, moto_state):
    """A .maas folder written before write-through (make demo of an earlier checkout) still serves."""
    body = b"manifest"
    store.blobs.mkdir(parents=True)
    (store.blobs / hashlib.sha256(body).hexdigest()).write_bytes(body)
    store.legacy_index.write_text(
        json.dumps(
            {
                BUCKET: {
                    "models/digits/v1/manifest.json": {
                        "blob": hashlib.sha256(body).hexdigest(),
                        "content_type": "application/json",
                        "metadata": {"sha": "1"},
                    }
                }
            }
        )
    )
    assert load_into_moto(store) == 1
    assert not store.legacy_index.exists()
    record = store.read_record(BUCKET, "models/digits/v1/manifest.json")
    assert record is not None and record["metadata"]["x-amz-meta-sha"] == "1"


@pytest.mark.parametrize(
    ("method", "uri", "headers", "expected"),
    [
        ("PUT", "/b/k%2Bx", {}, ("b", "k+x", False)),
        ("GET", "/b/k", {}, None),
        ("PUT", "/b/k?partNumber=1&uploadId=u", {}, None),  # a part changes no object
        ("POST", "/b/k?uploads", {}, None),
        ("POST", "/b/k?uploadId=u", {}, ("b", "k", False)),  # completing the upload does
        ("DELETE", "/b/k?uploadId=u", {}, None),
        ("POST", "/b?delete", {}, ("b", None, True)),
        ("PUT", "/b?notification", {}, ("b", None, False)),
        ("POST", "/", {"HTTP_X_AMZ_TARGET": "AmazonSQS.SendMessage"}, None),
        (
            "POST",
            "/",
            {"HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=a/20260101/us-east-1/sqs/aws4_request"},
            None,
        ),
        ("POST", "/moto-api/reset", {}, None),
    ],
)
def test_which_requests_are_written_through(method, uri, headers, expected):
    assert mutation({"REQUEST_METHOD": method, "RAW_URI": uri, **headers}) == expected
