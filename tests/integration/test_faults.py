"""Fault injection through the local stack: what a client sees when a dependency fails, and that no
batch row is lost or doubled.

The stack here talks to S3 and SQS through a proxy on 127.0.0.1 (FaultProxy) that can refuse a
request, answer 503, cut a download short or stall it; the test process runs the embedded S3 itself
and points the stack's state at the proxy, so every function and poller goes through it. Models are
published straight to the embedded S3, and corrupted or deleted there, behind the stack's back.
(A repeated delivery of a whole file is tested in test_batch_local.py; here the parts repeat.)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus, urlsplit

import pytest

from tests_support import (
    ROOT,
    build_digits_onnx,
    build_two_input_onnx,
    digits_manifest,
    free_port,
    http,
    start_api,
    stop_api,
    two_input_manifest,
)

pytestmark = pytest.mark.integration

ZERO_DIGIT = [[[0.0]] * 8] * 8
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}


# -- a proxy that can fail --------------------------------------------------------------------
@dataclass
class Fault:
    """What to do with the requests that match: refuse (close without an answer), error (503
    SlowDown), cut (send part of the body, then close) or stall (send part of the body, then hold
    the connection until released)."""

    method: str
    path: re.Pattern[str]
    action: str
    fraction: float = 0.5
    times: int | None = None  # None: every match
    hits: int = 0
    stalled: threading.Event = field(default_factory=threading.Event)

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and bool(self.path.search(path)) and (self.times is None or self.hits < self.times)


class FaultProxy:
    """An HTTP proxy in front of the embedded S3/SQS server, on 127.0.0.1."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.faults: list[Fault] = []
        self.sqs_sends: list[dict[str, Any]] = []  # SendMessageBatch bodies, to replay them
        self.seen: list[tuple[str, str, str]] = []  # (method, path, what happened), for a failure's message
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), self._handler())
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FaultProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    @contextlib.contextmanager
    def failing(self, *faults: Fault) -> Iterator[tuple[Fault, ...]]:
        self.release.clear()
        with self.lock:
            self.faults = list(faults)
        try:
            yield faults
        finally:
            with self.lock:
                self.faults = []
            self.release.set()

    def _match(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    return fault
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self) -> None:
                body = self._body()
                if "SendMessageBatch" in self.headers.get("X-Amz-Target", ""):
                    proxy.sqs_sends.append(json.loads(body))
                fault = proxy._match(self.command, self.path)
                proxy.seen.append((self.command, self.path, fault.action if fault else "passed"))
                if fault is not None and fault.action == "hang":
                    fault.stalled.set()
                    proxy.release.wait(300)
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault is not None and fault.action == "refuse":
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault is not None and fault.action == "error":
                    error = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    self.wfile.write(error)
                    return
                upstream = HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                upstream.close()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                # A HEAD answer has no body but the length of the object's.
                self.send_header(
                    "Content-Length",
                    response.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data)),
                )
                self.end_headers()
                if fault is None:
                    self.wfile.write(data)
                    return
                self.wfile.write(data[: int(len(data) * fault.fraction)])  # cut or stall mid-download
                self.wfile.flush()
                if fault.action == "stall":
                    fault.stalled.set()
                    proxy.release.wait(300)
                self.close_connection = True

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        return Handler


# -- a local stack behind the proxy -----------------------------------------------------------
def start_stack(state: Path, env_vars: dict[str, dict[str, str]]) -> dict[str, Any]:
    """The embedded S3 in this process, the proxy in front of it, and start-api pointed at the proxy."""
    from maas.embedded_s3 import EmbeddedS3
    from maas.stack import load_template
    from maas_core.shared.registry import Registry

    template = load_template(str(ROOT / "template.yaml"))
    s3 = EmbeddedS3(state, template.bucket_names()).start()
    assert s3.owns_server
    proxy = FaultProxy(s3.endpoint).start()
    # start-api reuses the server named here: every S3 and SQS call of the stack goes through the proxy.
    (state / "s3" / "server.json").write_text(json.dumps({"endpoint": proxy.url, "pid": os.getpid()}))
    api = start_api(state, env_vars)
    bucket = template.function("ApiFunction").environment["MODEL_BUCKET"]
    return {
        **api,
        "proxy": proxy,
        "s3": s3,
        "client": s3.client(),
        "sqs": s3.client("sqs"),
        "bucket": bucket,
        "registry": Registry(bucket, s3.client()),
        "state": state,
    }


def stop_stack(stack: dict[str, Any]) -> None:
    stack["proxy"].release.set()
    stop_api(stack, timeout=60)
    stack["proxy"].stop()
    stack["s3"].stop()


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    stack = start_stack(
        tmp_path_factory.mktemp("maas-faults"),
        {
            "ApiFunction": {"ALIAS_TTL_SECONDS": "1"},
            "BatchFunction": {"ALIAS_TTL_SECONDS": "1", "BATCH_PART_BYTES": "100000", "BATCH_CHUNK_ROWS": "64"},
        },
    )
    stack["version"] = stack["registry"].publish("digits", build_digits_onnx(), digits_manifest()).version
    yield stack
    stop_stack(stack)


def predict(stack: dict[str, Any], name: str, **query: str) -> tuple[int, dict[str, Any], float]:
    suffix = "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
    started = time.monotonic()
    status, body = http(
        "POST", f"{stack['url']}/models/{name}/predict{suffix}", json.dumps({"instances": [ZERO_DIGIT]}).encode()
    )
    return status, body, time.monotonic() - started


def same_container(stack: dict[str, Any]) -> bool:
    status, health = http("GET", f"{stack['url']}/health")
    return status == 200 and health["container"] == stack["container"]


def s3_path(stack: dict[str, Any], key: str) -> re.Pattern[str]:
    """Requests for one object of the bucket (path-style), or for any with key=""."""
    return re.compile(rf"^/{re.escape(stack['bucket'])}/{re.escape(key)}" + (r"(\?|$)" if key else ""))


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"{what}: not after {timeout} s"
        time.sleep(0.3)
    return result


def summary_of(stack: dict[str, Any], key: str, etag: str) -> dict[str, Any] | None:
    out = key.replace("batch/in/", "batch/out/", 1) + f"/{etag}/summary.json"
    try:
        return json.loads(stack["client"].get_object(Bucket=stack["bucket"], Key=out)["Body"].read())
    except stack["client"].exceptions.NoSuchKey:
        return None


def rows_of(stack: dict[str, Any], summary: dict[str, Any]) -> tuple[list[int], list[int]]:
    """Line numbers in the results and in the errors file, in the order they were written."""
    found: dict[str, list[int]] = {"results": [], "errors": []}
    for kind, numbers in found.items():
        for uri in summary[kind]:
            key = uri.removeprefix(f"s3://{stack['bucket']}/")
            text = stack["client"].get_object(Bucket=stack["bucket"], Key=key)["Body"].read().decode()
            numbers += [json.loads(line)["line"] for line in text.splitlines() if line]
    return found["results"], found["errors"]


def digits_jsonl(rows: int, bad_every: int = 0) -> bytes:
    from sklearn.datasets import load_digits

    images = load_digits().images[:, :, :, None]
    lines = [json.dumps({"id": i, "instances": [images[i % len(images)].tolist()]}) for i in range(rows)]
    for i in range(bad_every - 1, rows, bad_every) if bad_every else ():
        lines[i] = json.dumps([[0.0] * 8] * 8)  # wrong shape: an errors-file row
    return ("\n".join(lines) + "\n").encode()


def queue_url(stack: dict[str, Any], name: str) -> str:
    return stack["sqs"].get_queue_url(QueueName=name)["QueueUrl"]


def event_keys(body: str) -> list[str]:
    """The object keys an S3 event notification names (URL-encoded in the event)."""
    return [unquote_plus(r["s3"]["object"]["key"]) for r in json.loads(body).get("Records", [])]


def drain_dead_letters(stack: dict[str, Any], key: str, timeout: float = 60) -> list[dict[str, Any]]:
    """Wait for the messages about ``key`` in the dead-letter queue and take them out of it."""
    sqs, dlq = stack["sqs"], queue_url(stack, "BatchDeadLetterQueue")
    taken: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not taken and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            if key in event_keys(message["Body"]):
                sqs.delete_message(QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"])
                taken.append(message)
            else:  # another test's: leave it
                sqs.change_message_visibility(QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    return taken


def runtime_pids(stack: dict[str, Any], handler: str) -> list[int]:
    """The awslambdaric processes of this stack (descendants of its start-api) that run ``handler``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            pid, ancestors = int(entry.name), []
            parent = pid
            while parent > 1 and len(ancestors) < 20:
                parent = int((Path("/proc") / str(parent) / "stat").read_text().rsplit(")", 1)[1].split()[1])
                ancestors.append(parent)
        except (OSError, ValueError, IndexError):
            continue
        runtime = command[:3] == [command[0], b"-m", b"awslambdaric"]  # not the emulator that started it
        if runtime and handler.encode() in command and stack["process"].pid in ancestors:
            found.append(pid)
    return found


# -- S3 failing under the API -----------------------------------------------------------------
S3_FAULTS = [
    ("refusing connections", "refuse", False),
    ("answering 503 SlowDown", "error", False),
    ("cutting the model download short", "cut", True),
    ("stalling mid-download past the read timeout", "stall", True),
]


@pytest.mark.parametrize(("how", "action", "model_only"), S3_FAULTS, ids=[f[0] for f in S3_FAULTS])
def test_s3_failing_is_a_503_for_a_cold_model_while_warm_ones_keep_serving(faulty, how, action, model_only):
    name = f"cold-{action}"
    # Bytes of their own: the container keeps verified files by sha256, and would serve a copy it holds.
    seed = 10 + [f[1] for f in S3_FAULTS].index(action)
    version = faulty["registry"].publish(name, build_digits_onnx(seed=seed), digits_manifest()).version
    assert predict(faulty, "digits")[0] == 200  # warm: loaded, and its alias known
    where = s3_path(faulty, f"models/{name}/{version}/model.onnx") if model_only else s3_path(faulty, "")
    with faulty["proxy"].failing(Fault("GET", where, action)) as (fault,):
        time.sleep(1.2)  # past ALIAS_TTL_SECONDS: the warm container re-reads the alias, and cannot
        status, body, took = predict(faulty, name)
        assert (status, body.get("code")) == (503, "registry_unavailable"), body
        assert took < 29, f"the 503 took {took:.1f} s: past API Gateway's 29 s the client gets a 504 instead"
        assert fault.hits > 0
        status, body, _ = predict(faulty, "digits")
        assert status == 200 and body["version"] == faulty["version"]  # what the container holds, it serves
        if not model_only:
            assert http("GET", f"{faulty['url']}/models")[1].get("code") == "registry_unavailable"
    # S3 back: the version loads on a later request (a failed load is remembered for a few seconds,
    # so that a broken version is not downloaded again by every request meanwhile).
    wait_for(lambda: predict(faulty, name)[0] == 200, 20, f"{name} once S3 answered again")
    assert same_container(faulty)


def test_ready_is_a_503_while_the_registry_cannot_be_read_and_live_stays_200(faulty):
    """/v2/health/ready means "the registry can be read": a KServe or Triton client's readiness
    probe sees the outage (non-200) while liveness still says the container runs."""
    wait_for(lambda: http("GET", f"{faulty['url']}/v2/health/ready")[0] == 200, 10, "ready with S3 up")
    every_read = re.compile(rf"^/{re.escape(faulty['bucket'])}([/?]|$)")  # objects and listings
    with faulty["proxy"].failing(Fault("GET", every_read, "error")):
        time.sleep(5.2)  # past the 5 s a successful read keeps ready at 200
        status, body = http("GET", f"{faulty['url']}/v2/health/ready")
        assert (status, body.get("code")) == (503, "registry_unavailable"), body
        assert http("GET", f"{faulty['url']}/v2/health/live")[0] == 200
    wait_for(lambda: http("GET", f"{faulty['url']}/v2/health/ready")[0] == 200, 10, "ready once S3 answered")
    assert same_container(faulty)


# -- a model damaged in S3 --------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["corrupted", "truncated"])
def test_a_damaged_model_file_is_a_503_model_integrity_error(faulty, damage):
    name = f"{damage}-model"
    seed = 20 if damage == "corrupted" else 21  # bytes no earlier test loaded (the file cache is by sha256)
    version = faulty["registry"].publish(name, build_digits_onnx(seed=seed), digits_manifest()).version
    key = f"models/{name}/{version}/model.onnx"
    data = faulty["client"].get_object(Bucket=faulty["bucket"], Key=key)["Body"].read()
    damaged = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:] if damage == "corrupted" else data[: len(data) // 2]
    faulty["client"].put_object(Bucket=faulty["bucket"], Key=key, Body=damaged)
    status, body, _ = predict(faulty, name)
    assert (status, body.get("code")) == (503, "model_integrity_error"), body
    assert predict(faulty, "digits")[0] == 200 and same_container(faulty)


def test_a_model_onnxruntime_cannot_load_is_a_503_model_load_failed(faulty):
    """Bytes that match their manifest but that this onnxruntime cannot load (publish refuses such a
    file; one written by an older publisher, or met by a different onnxruntime, still exists)."""
    import hashlib

    s3, bucket = faulty["client"], faulty["bucket"]
    version = faulty["registry"].publish("unloadable", build_digits_onnx(seed=5), digits_manifest()).version
    garbage = b"not an ONNX graph " * 64
    manifest_key = f"models/unloadable/{version}/manifest.json"
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    manifest["artifact"].update(sha256=hashlib.sha256(garbage).hexdigest(), size_bytes=len(garbage))
    s3.put_object(Bucket=bucket, Key=f"models/unloadable/{version}/model.onnx", Body=garbage)
    s3.put_object(Bucket=bucket, Key=manifest_key, Body=json.dumps(manifest).encode())
    status, body, _ = predict(faulty, "unloadable")
    assert (status, body.get("code")) == (503, "model_load_failed"), body
    assert predict(faulty, "digits")[0] == 200 and same_container(faulty)


def test_a_batch_file_for_a_damaged_model_waits_in_the_dead_letter_queue_then_scores_once(faulty):
    """A dependency failure is retried, then parked with only a failed summary written (so a job says
    why); after the model is repaired and the message redriven, every row is scored exactly once."""
    registry, s3, bucket = faulty["registry"], faulty["client"], faulty["bucket"]
    version = registry.publish("repaired", build_digits_onnx(seed=8), digits_manifest()).version
    model_key = f"models/repaired/{version}/model.onnx"
    good = s3.get_object(Bucket=bucket, Key=model_key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=model_key, Body=good[: len(good) // 2])
    key = "batch/in/repaired/production/waits.jsonl"
    etag = s3.put_object(Bucket=bucket, Key=key, Body=digits_jsonl(150, bad_every=50))["ETag"].strip('"')
    (parked,) = drain_dead_letters(faulty, key)
    out = key.replace("batch/in/", "batch/out/", 1) + "/"
    written = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=out).get("Contents", [])]
    assert written == [f"{out}{etag}/summary.json"]  # nothing half-written: the failed summary alone
    failed = summary_of(faulty, key, etag)
    assert failed is not None and (failed["status"], failed["code"]) == ("failed", "model_integrity_error")
    assert (failed["retrying"], failed["attempt"], failed["max_attempts"]) == (False, 3, 3)  # parked, and says so
    s3.put_object(Bucket=bucket, Key=model_key, Body=good)
    summary = None

    def succeeded() -> dict[str, Any] | None:
        found = summary_of(faulty, key, etag)
        return found if found and found["status"] == "succeeded" else None

    for _ in range(5):  # redrive, as an operator would, until the container tries the model again
        faulty["sqs"].send_message(QueueUrl=queue_url(faulty, "BatchQueue"), MessageBody=parked["Body"])
        with contextlib.suppress(AssertionError):
            summary = wait_for(succeeded, 10, "the redriven file's summary")
            break
        (parked,) = drain_dead_letters(faulty, key)
    assert summary is not None, "the redriven file was never scored"
    results, errors = rows_of(faulty, summary)
    assert (summary["rows"], summary["scored"], summary["failed"]) == (150, 147, 3)
    assert sorted(results + errors) == list(range(1, 151)) and errors == [50, 100, 150]


# -- an alias pointing at a version that is gone ----------------------------------------------
def delete_version(stack: dict[str, Any], name: str, version: str) -> None:
    for file in ("model.onnx", "manifest.json"):
        stack["client"].delete_object(Bucket=stack["bucket"], Key=f"models/{name}/{version}/{file}")


def test_a_warm_container_keeps_serving_a_version_deleted_behind_its_alias(faulty):
    version = faulty["registry"].publish("vanishing", build_digits_onnx(seed=3), digits_manifest()).version
    assert predict(faulty, "vanishing")[0] == 200
    delete_version(faulty, "vanishing", version)
    time.sleep(1.2)  # past ALIAS_TTL_SECONDS: the alias is read again and still names the version held
    status, body, _ = predict(faulty, "vanishing")
    assert status == 200 and body["version"] == version and same_container(faulty)


def test_an_alias_pointing_at_a_deleted_version_is_a_503_alias_target_missing(faulty):
    version = faulty["registry"].publish("dangling", build_digits_onnx(seed=4), digits_manifest()).version
    delete_version(faulty, "dangling", version)
    status, body, _ = predict(faulty, "dangling")
    assert (status, body.get("code")) == (503, "alias_target_missing"), body
    assert body["details"]["version"] == version and same_container(faulty)


# -- SQS delivering the same message again ----------------------------------------------------
def test_parts_delivered_again_change_no_row_and_add_no_object(faulty):
    s3, bucket = faulty["client"], faulty["bucket"]
    key = "batch/in/digits/production/again.jsonl"
    data = digits_jsonl(600, bad_every=100)
    assert len(data) > 2 * 100_000  # over BATCH_PART_BYTES here: cut into parts
    etag = s3.put_object(Bucket=bucket, Key=key, Body=data)["ETag"].strip('"')
    summary = wait_for(lambda: summary_of(faulty, key, etag), 120, "the summary")
    assert summary["parts"] >= 3
    out = key.replace("batch/in/", "batch/out/", 1) + f"/{etag}/"

    def outputs() -> dict[str, str]:
        return {o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=out)["Contents"]}

    before = outputs()
    parts = [e for send in faulty["proxy"].sqs_sends for e in send["Entries"] if key in e["MessageBody"]]
    assert len(parts) == summary["parts"]
    queue = queue_url(faulty, "BatchQueue")
    for entry in parts:  # every part message once more, as SQS may deliver it
        faulty["sqs"].send_message(QueueUrl=queue, MessageBody=entry["MessageBody"])

    def drained() -> bool:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = faulty["sqs"].get_queue_attributes(QueueUrl=queue, AttributeNames=names)["Attributes"]
        return all(attributes[n] == "0" for n in names)

    wait_for(drained, 60, "the repeated parts")
    after = outputs()
    assert sorted(after) == sorted(before)  # no object added
    assert {k: v for k, v in after.items() if "/parts/" in k} == {k: v for k, v in before.items() if "/parts/" in k}
    again = summary_of(faulty, key, etag)
    assert (again["rows"], again["scored"], again["failed"]) == (600, 594, 6)
    results, errors = rows_of(faulty, again)
    assert sorted(results + errors) == list(range(1, 601))


# -- a batch invocation killed ----------------------------------------------------------------
def test_a_batch_invocation_killed_mid_file_is_retried_and_scores_every_row_once(faulty):
    """Lambda kills an invocation at its timeout (900 s here); the runtime is killed mid-download
    instead, which leaves the same trace: no answer to the poller, the message back after its timeout."""
    s3, bucket = faulty["client"], faulty["bucket"]
    key = "batch/in/digits/production/killed.jsonl"
    data = digits_jsonl(180, bad_every=40)
    assert len(data) < 100_000  # one invocation scores it all
    with faulty["proxy"].failing(Fault("GET", s3_path(faulty, key), "stall", fraction=0.5, times=1)) as (fault,):
        etag = s3.put_object(Bucket=bucket, Key=key, Body=data)["ETag"].strip('"')
        assert fault.stalled.wait(60), "the batch function never started reading the file"
        (pid,) = runtime_pids(faulty, "maas_core.functions.batch.app.lambda_handler")
        os.kill(pid, signal.SIGKILL)
    summary = wait_for(lambda: summary_of(faulty, key, etag), 120, "the retried file's summary")
    results, errors = rows_of(faulty, summary)
    assert (summary["rows"], summary["scored"], summary["failed"]) == (180, 176, 4)
    assert sorted(results + errors) == list(range(1, 181)) and errors == [40, 80, 120, 160]


# -- S3 that never answers (last: today it costs the container) -------------------------------
def test_s3_that_never_answers_is_a_503_within_the_api_timeout(faulty):
    version = faulty["registry"].publish("cold-hang", build_digits_onnx(seed=6), digits_manifest()).version
    try:
        with faulty["proxy"].failing(Fault("GET", s3_path(faulty, f"models/cold-hang/{version}/model.onnx"), "hang")):
            try:
                status, body, took = predict(faulty, "cold-hang")
            except OSError as exc:  # the local API drops the connection when the function times out
                status, body, took = 0, {"error": repr(exc)}, 29.0
        assert (status, body.get("code")) == (503, "registry_unavailable"), body
        assert took < 29 and same_container(faulty)
    finally:
        faulty["container"] = http("GET", f"{faulty['url']}/health")[1]["container"]


# -- /tmp full or read-only --------------------------------------------------------------------
@pytest.fixture(scope="module")
def full_tmp(tmp_path_factory):
    """A stack whose OPTIMIZED_MODEL_DIR (the optimised-graph cache in /tmp) cannot be written."""
    state = tmp_path_factory.mktemp("maas-full-tmp")
    (state / "full").write_text("a file where the cache folder would go: nothing can be written under it")
    unwritable = {"OPTIMIZED_MODEL_DIR": str(state / "full" / "maas-models")}
    stack = start_stack(state, {"ApiFunction": unwritable, "BatchFunction": unwritable})
    stack["version"] = stack["registry"].publish("digits", build_digits_onnx(), digits_manifest()).version
    stack["registry"].publish("blend", build_two_input_onnx(), two_input_manifest())
    yield stack
    stop_stack(stack)


def test_a_full_or_read_only_tmp_does_not_stop_models_from_loading(full_tmp):
    status, body, _ = predict(full_tmp, "digits")
    assert status == 200, body
    key = "batch/in/digits/production/full-tmp.jsonl"
    etag = full_tmp["client"].put_object(Bucket=full_tmp["bucket"], Key=key, Body=digits_jsonl(20))["ETag"].strip('"')
    summary = wait_for(lambda: summary_of(full_tmp, key, etag), 60, "the summary")
    assert summary["scored"] == 20 and same_container(full_tmp)
