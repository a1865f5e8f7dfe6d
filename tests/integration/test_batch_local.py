"""Event-triggered batch scoring on the local stack: a put under batch/in/ reaches BatchFunction
through the embedded S3's notification, SQS and the RIE, exactly as the template wires it."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import numpy as np
import pytest

from tests_support import MAAS, http

pytestmark = pytest.mark.integration


def wait_for(s3, bucket: str, key: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except s3.exceptions.NoSuchKey:
            time.sleep(0.3)
    raise AssertionError(f"no {key} after {timeout} s")


def lines(s3, bucket: str, uris: list[str]) -> list[dict]:
    """The JSON Lines of every part, in order."""
    out = []
    for uri in uris:
        key = uri.removeprefix(f"s3://{bucket}/")
        out += [json.loads(x) for x in s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines() if x]
    return out


@pytest.fixture(scope="module")
def ten_thousand(stack):
    """10,000 digit rows (the bundled 1,797 repeated) with 3 malformed rows, scored once."""
    from sklearn.datasets import load_digits

    images = load_digits().images[:, :, :, None]
    rows = [images[i % len(images)] for i in range(9_997)]
    text = [json.dumps({"id": i, "instances": [img.tolist()]}) for i, img in enumerate(rows)]
    for line_no, bad in ((101, "{truncated"), (5_000, json.dumps([[0.0] * 8] * 8)), (9_999, '"a string"')):
        text.insert(line_no - 1, bad)
    s3, bucket = stack["s3"].client(), stack["bucket"]
    key = "batch/in/digits/production/ten-thousand.jsonl"
    etag = s3.put_object(Bucket=bucket, Key=key, Body=("\n".join(text) + "\n").encode())["ETag"].strip('"')
    prefix = f"batch/out/digits/production/ten-thousand.jsonl/{etag}/"
    summary = wait_for(s3, bucket, prefix + "summary.json", timeout=300)
    return {"rows": np.asarray(rows, dtype=np.float32), "prefix": prefix, "summary": summary, "key": key, "etag": etag}


def test_every_row_is_scored_or_in_the_errors_file(stack, ten_thousand):
    s3, bucket = stack["s3"].client(), stack["bucket"]
    summary = ten_thousand["summary"]
    assert (summary["rows"], summary["scored"], summary["failed"]) == (10_000, 9_997, 3)
    assert summary["parts"] >= 4  # fanned out through the queue in 1 MB parts (see conftest)
    errors = lines(s3, bucket, summary["errors"])
    assert [e["line"] for e in errors] == [101, 5_000, 9_999]
    results = lines(s3, bucket, summary["results"])
    assert [r["id"] for r in results] == list(range(9_997))
    # The same answers the API gives one request at a time (checked on a sample over HTTP) ...
    for i in range(0, 9_997, 997):
        status, body = http(
            "POST",
            f"{stack['url']}/models/digits/predict",
            json.dumps({"instances": [ten_thousand["rows"][i].tolist()]}).encode(),
        )
        assert status == 200 and body["predictions"][0]["label"] == results[i]["prediction"]["label"]
        assert np.allclose(
            body["predictions"][0]["probabilities"], results[i]["prediction"]["probabilities"], atol=1e-6
        )


def test_a_repeated_delivery_leaves_one_result_and_one_summary(stack, ten_thousand):
    s3, sqs, bucket = stack["s3"].client(), stack["s3"].client("sqs"), stack["bucket"]
    notification = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": bucket},
                    "object": {"key": ten_thousand["key"], "eTag": ten_thousand["etag"]},
                },
            }
        ]
    }
    queue = sqs.get_queue_url(QueueName="BatchQueue")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(notification))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        attrs = sqs.get_queue_attributes(
            QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        if attrs == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}:
            break
        time.sleep(0.3)
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="batch/out/digits/production/ten-thousand.jsonl/")
    keys = [o["Key"].removeprefix(ten_thousand["prefix"]) for o in listing["Contents"]]
    parts = ten_thousand["summary"]["parts"]
    expected = [
        f"parts/{i:05d}.{name}" for i in range(parts) for name in ("done.json", "errors.jsonl", "results.jsonl")
    ]
    assert sorted(keys) == sorted([*expected, "summary.json"])  # one set of outputs, one summary
    assert wait_for(s3, bucket, ten_thousand["prefix"] + "summary.json") == ten_thousand["summary"]


def test_maas_local_batch_downloads_results_errors_and_summary(stack, tmp_path):
    from sklearn.datasets import load_digits

    images = load_digits().images[:20]
    csv = tmp_path / "digits.csv"
    csv.write_text(
        "\n".join(
            [",".join(["id", *[f"image_{i}" for i in range(64)]])]
            + [",".join([f"d{i}", *map(str, img.reshape(-1))]) for i, img in enumerate(images)]
        )
        + "\n"
    )
    out = tmp_path / "out"
    result = subprocess.run(
        [*MAAS, "local", "batch", str(csv), "--model", "digits", "--out", str(out), "--timeout", "120"],
        env=stack["env"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["format"] == "csv" and summary["scored"] == 20
    results = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    status, api = http(
        "POST",
        f"{stack['url']}/models/digits/predict",
        json.dumps({"instances": images[:, :, :, None].tolist()}).encode(),
    )
    assert status == 200 and [r["prediction"]["label"] for r in results] == [p["label"] for p in api["predictions"]]
    assert (out / "errors.jsonl").read_text() == ""


def test_a_large_input_goes_through_a_job_and_a_presigned_upload(stack):
    import urllib.request

    from sklearn.datasets import load_digits

    status, job = http("POST", f"{stack['url']}/models/digits/jobs", json.dumps({"format": "jsonl"}).encode())
    assert status == 201 and job["status"] == "awaiting_upload"
    assert http("GET", f"{stack['url']}{job['status_path']}")[1]["status"] == "awaiting_upload"
    images = load_digits().images[:30, :, :, None]
    body = "\n".join(json.dumps(img.tolist()) for img in images).encode()
    state = upload_and_wait(stack, job, body)
    assert state["status"] == "succeeded" and state["summary"]["scored"] == 30
    with urllib.request.urlopen(state["downloads"]["results"][0], timeout=30) as response:
        results = [json.loads(x) for x in response.read().decode().splitlines()]
    assert [r["line"] for r in results] == list(range(1, 31))


def test_job_errors_are_4xx(stack):
    assert http("POST", f"{stack['url']}/models/nope/jobs", b"{}")[1]["code"] == "model_not_found"
    assert http("POST", f"{stack['url']}/models/digits/jobs", b'{"format": "xlsx"}')[0] == 422
    assert http("GET", f"{stack['url']}/jobs/{'0' * 32}")[1]["code"] == "job_not_found"
    assert http("GET", f"{stack['url']}/jobs/..%2F..")[1]["code"] == "invalid_name"


def test_a_file_that_cannot_be_scored_gets_a_failed_summary_and_lands_in_the_dlq(stack):
    s3, sqs, bucket = stack["s3"].client(), stack["s3"].client("sqs"), stack["bucket"]
    key = "batch/in/nope/production/orphan.jsonl"
    etag = s3.put_object(Bucket=bucket, Key=key, Body=b"[1, 2]\n")["ETag"].strip('"')
    summary = wait_for(s3, bucket, f"batch/out/nope/production/orphan.jsonl/{etag}/summary.json")
    assert summary["status"] == "failed" and summary["code"] == "model_not_found"
    dlq = sqs.get_queue_url(QueueName="BatchDeadLetterQueue")["QueueUrl"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1).get("Messages", [])
        if messages:
            break
    assert messages, "the failed file's message never reached the dead-letter queue"
    assert json.loads(messages[0]["Body"])["Records"][0]["s3"]["object"]["key"].endswith("orphan.jsonl")


def test_rows_the_results_cannot_carry_fail_alone_and_a_lying_npy_is_refused(stack):
    """Through S3 -> SQS -> BatchFunction: NaN ids, a CSV cell over the csv module's field limit and a
    line over the 1 MiB cap each fail only their row; a .npy header that declares rows its bytes do not
    hold gets a failed summary at once (it used to drive endless rows and output)."""
    from pathlib import Path

    s3, bucket = stack["s3"].client(), stack["bucket"]
    corpus = Path(__file__).parents[1] / "corpus" / "batch"
    digit, long = json.dumps([[[0]] * 8] * 8), "[" + "0," * 600_000 + "0]"
    header = ",".join(["id", *[f"image_{i}" for i in range(64)]])
    files = {
        "nan-id.jsonl": (corpus / "nan-id.jsonl").read_bytes(),
        "long-cell.csv": "\n".join(
            [
                header,
                *(",".join([name, cell, *["0"] * 63]) for name, cell in (("a", "1"), ("b", "1" * 140_000), ("c", "2"))),
            ]
        ).encode(),
        "long-line.jsonl": "\n".join([digit, long, digit]).encode(),
        "zero-dim.npy": (corpus / "zero-dim.npy").read_bytes(),
    }
    prefixes = {}
    for name, data in files.items():
        key = f"batch/in/digits/production/hardening/{name}"
        etag = s3.put_object(Bucket=bucket, Key=key, Body=data)["ETag"].strip('"')
        prefixes[name] = f"batch/out/digits/production/hardening/{name}/{etag}/"
    summaries = {name: wait_for(s3, bucket, prefix + "summary.json") for name, prefix in prefixes.items()}

    def rows(name: str) -> tuple[list[int], list[dict]]:
        summary = summaries[name]
        return [r["line"] for r in lines(s3, bucket, summary["results"])], lines(s3, bucket, summary["errors"])

    assert summaries["nan-id.jsonl"]["status"] == "succeeded"
    results, errors = rows("nan-id.jsonl")
    assert (results, [e["line"] for e in errors]) == ([1, 6], [2, 3, 4, 5])
    assert all("'id' is NaN or infinite" in e["error"] for e in errors)
    results, errors = rows("long-cell.csv")
    assert (results, errors) == (
        [2, 4],
        [{"line": 3, "error": "not valid CSV: field larger than field limit (131072)"}],
    )
    results, errors = rows("long-line.jsonl")
    assert (results, [e["line"] for e in errors]) == ([1, 3], [2])
    assert errors[0]["error"] == f"line is {len(long)} bytes; at most 1048576 are read"
    failed = summaries["zero-dim.npy"]
    assert (failed["status"], failed["code"], failed["retrying"]) == ("failed", "batch_file_invalid", False)
    assert "a row dimension of 0" in failed["error"]
    assert s3.list_objects_v2(Bucket=bucket, Prefix=prefixes["zero-dim.npy"])["KeyCount"] == 1  # the summary alone


def test_a_job_whose_file_is_refused_ends_failed_not_running(stack):
    from pathlib import Path

    status, job = http("POST", f"{stack['url']}/models/digits/jobs", json.dumps({"format": "npy"}).encode())
    assert status == 201, job
    data = (Path(__file__).parents[1] / "corpus" / "batch" / "zero-dim.npy").read_bytes()
    state = upload_and_wait(stack, job, data)
    assert state["status"] == "failed" and state["summary"]["code"] == "batch_file_invalid"


def upload_and_wait(stack: dict[str, Any], job: dict[str, Any], data: bytes) -> dict[str, Any]:
    """PUT the file to the job's presigned URL, then poll the job until it is no longer pending."""
    import urllib.request

    upload = urllib.request.Request(job["upload"]["url"], data=data, method="PUT", headers=job["upload"]["headers"])
    with urllib.request.urlopen(upload, timeout=30) as response:
        assert response.status == 200
    deadline = time.monotonic() + 120
    while (state := http("GET", f"{stack['url']}{job['status_path']}")[1])["status"] in ("awaiting_upload", "running"):
        assert time.monotonic() < deadline, state
        time.sleep(0.3)
    return dict(state)
