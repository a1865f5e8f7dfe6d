"""The bad-input corpus (tests/corpus/) through the local stack.

Every request in corpus/api/requests.json gets the status and code the README's error table
documents; every file in corpus/batch/cases.json dropped under batch/in/ gets a failed summary or
its rows in the errors file, each row exactly once. Afterwards the same API container answers and a
good file is still scored: nothing else broke.
"""

from __future__ import annotations

import io
import json
import subprocess
import time
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

from tests_support import MAAS, http

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).parents[1] / "corpus"
API_CASES = json.loads((CORPUS / "api" / "requests.json").read_text())
BATCH_CASES = json.loads((CORPUS / "batch" / "cases.json").read_text())
ZERO_DIGIT = json.dumps([[[0]] * 8] * 8)


# -- building the bodies the corpus describes -------------------------------------------------
def digit_with(leaf: str) -> str:
    """One 8x8x1 digit of zeros whose first value is ``leaf`` (raw JSON text)."""
    return ZERO_DIGIT.replace("0", leaf, 1)


def v2_body(**tensor: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "image", "shape": [1, 8, 8, 1], "datatype": "FP32", "data": [0] * 64, **tensor}]}


def zeros_of_size(size: int) -> bytes:
    """{"instances": [0,0,...]} of exactly ``size`` bytes."""
    head, tail = b'{"instances": [', b"0]}"
    pad = b" " * ((size - len(head) - len(tail)) % 2)
    return head + pad + b"0," * ((size - len(head) - len(tail) - len(pad)) // 2) + tail


def request_body(spec: dict[str, Any] | None) -> bytes | None:
    if spec is None:
        return None
    ((kind, value),) = spec.items()
    if kind == "json":
        return json.dumps(value).encode()
    if kind == "text":
        return value.encode()
    if kind == "file":
        return (CORPUS / value).read_bytes()
    if kind == "utf16":
        return ('{"instances": [' + ZERO_DIGIT + "]}").encode("utf-16")
    if kind == "zeros_bytes":
        return zeros_of_size(value)
    if kind == "nested":
        return ('{"instances": ' + "[" * value + "0" + "]" * value + "}").encode()
    if kind == "v2_nested":
        return json.dumps(v2_body(data="@")).replace('"@"', "[" * value + "0" + "]" * value).encode()
    if kind == "long_integer":
        return ('{"instances": [' + "1" * value + "]}").encode()
    if kind == "digit_with":
        return ('{"instances": [' + digit_with(value) + "]}").encode()
    if kind == "v2_digit_with":
        return json.dumps(v2_body(data="@")).replace('"@"', "[" + value + ", " + "0, " * 62 + "0]").encode()
    if kind == "v2_tensor":
        return json.dumps(v2_body(**value)).encode()
    raise ValueError(f"unknown body kind {kind!r}")


def send(url: str, case: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The request exactly as the corpus describes it (HTTPConnection adds no Content-Type of its own)."""
    parts = urlsplit(url)
    connection = HTTPConnection(parts.hostname, parts.port, timeout=120)
    headers = case.get("headers", {"Content-Type": "application/json"})
    method, path = case.get("method", "POST"), case.get("path", "/models/digits/predict")
    spec = case.get("body")
    if spec and "declared_bytes" in spec:  # announce a body API Gateway refuses, without sending it
        connection.putrequest(method, path)
        for name, value in {**headers, "Content-Length": str(spec["declared_bytes"])}.items():
            connection.putheader(name, value)
        connection.endheaders()
    else:
        connection.request(method, path, body=request_body(spec), headers=headers)
    response = connection.getresponse()
    status, data = response.status, response.read()
    connection.close()
    return status, json.loads(data or b"{}")


# -- the API ----------------------------------------------------------------------------------
@pytest.mark.parametrize("case", API_CASES, ids=[c["id"] for c in API_CASES])
def test_each_bad_request_gets_its_documented_status(stack, case):
    status, body = send(stack["url"], case)
    expect = case["expect"]
    assert status == expect["status"], body
    if "code" in expect:
        codes = expect["code"] if isinstance(expect["code"], list) else [expect["code"]]
        assert body.get("code") in codes and isinstance(body["error"], str) and body["error"], body
    if "message" in expect:  # API Gateway's own answer: no code
        assert body == {"message": expect["message"]}
    if status == 200:
        assert body["model"] == "digits" and len(body["predictions"]) == 1


def test_base64_that_does_not_decode_is_a_400(stack):
    """The local API always sends valid base64; an event straight to the function can carry a truncated body."""
    result = subprocess.run(
        [*MAAS, "local", "invoke", "ApiFunction", "-e", str(CORPUS / "events" / "truncated_base64.json")],
        env=stack["env"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    response = json.loads(result.stdout)
    assert response["statusCode"] == 400, result.stderr[-3000:]
    assert json.loads(response["body"])["code"] == "bad_request"


def test_the_warm_container_answered_every_bad_request(stack):
    status, health = http("GET", f"{stack['url']}/health")
    assert status == 200 and health["container"] == stack["container"]
    status, body = http("POST", f"{stack['url']}/models/digits/predict", f'{{"instances": [{ZERO_DIGIT}]}}'.encode())
    assert status == 200 and body["version"] == stack["version"]


# -- batch files ------------------------------------------------------------------------------
def file_body(case: dict[str, Any]) -> bytes:
    if "file" in case:
        return (CORPUS / case["file"]).read_bytes()
    generate = case["generate"]
    if "truncated_npy" in generate:  # the header of 100 digits, then the bytes of only a few
        buffer = io.BytesIO()
        np.save(buffer, np.zeros((100, 8, 8, 1), dtype=np.float32))
        return buffer.getvalue()[: 128 + generate["truncated_npy"] * 256 + 17]
    if "garbage_bytes" in generate:
        return np.random.default_rng(generate["seed"]).bytes(generate["garbage_bytes"])
    columns = generate["wide_csv"]
    header = ",".join(f"{generate['column']}{i}" for i in range(columns)) + "\n"
    return (header + (",".join(["0"] * columns) + "\n") * generate["rows"]).encode()


def lines_of(data: bytes) -> list[int]:
    """Line numbers of the non-blank lines, a line ending at b"\\n" (as the batch readers count)."""
    return [
        i
        for i, raw in enumerate(data.split(b"\n"), start=1)
        if raw.removesuffix(b"\r").decode(errors="replace").strip()
    ]


def read_json_lines(s3: Any, bucket: str, uris: list[str]) -> list[dict[str, Any]]:
    out = []
    for uri in uris:
        text = s3.get_object(Bucket=bucket, Key=uri.removeprefix(f"s3://{bucket}/"))["Body"].read().decode()
        out += [json.loads(line) for line in text.splitlines() if line]
    return out


def listing(s3: Any, bucket: str) -> dict[str, str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}


def find_summary(s3: Any, bucket: str, key: str, etag: str) -> tuple[str, dict[str, Any]] | None:
    """Where a user finds the summary of s3://bucket/key: beside its results, or under batch/out/_rejected/."""
    if key.startswith("batch/in/"):
        expected = key.replace("batch/in/", "batch/out/", 1) + f"/{etag}/summary.json"
        try:
            return expected, json.loads(s3.get_object(Bucket=bucket, Key=expected)["Body"].read())
        except s3.exceptions.NoSuchKey:
            pass
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="batch/out/_rejected/")
    for summary_key in [o["Key"] for page in pages for o in page.get("Contents", [])]:
        summary = json.loads(s3.get_object(Bucket=bucket, Key=summary_key)["Body"].read())
        if summary["input"] == f"s3://{bucket}/{key}" and summary["etag"] == etag:
            return summary_key, summary
    return None


@pytest.fixture(scope="module")
def dropped(stack):
    """Every corpus file put under its key at once; then each one's summary, as the user finds it."""
    s3, bucket = stack["s3"].client(), stack["bucket"]
    before = {
        o["Key"]: o["ETag"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    }
    etags = {}
    for case in BATCH_CASES:
        etags[case["id"]] = s3.put_object(Bucket=bucket, Key=case["key"], Body=file_body(case))["ETag"].strip('"')
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    deadline = time.monotonic() + 300
    while len(found) < len(BATCH_CASES) and time.monotonic() < deadline:
        for case in BATCH_CASES:
            if case["id"] not in found and (summary := find_summary(s3, bucket, case["key"], etags[case["id"]])):
                found[case["id"]] = summary
        time.sleep(0.5)
    return {"found": found, "before": before, "etags": etags}


@pytest.mark.parametrize("case", BATCH_CASES, ids=[c["id"] for c in BATCH_CASES])
def test_each_bad_file_gets_a_failed_summary_or_every_row_in_results_or_errors(stack, dropped, case):
    s3, bucket = stack["s3"].client(), stack["bucket"]
    assert case["id"] in dropped["found"], f"no summary for {case['key']} after 300 s"
    where, summary = dropped["found"][case["id"]]
    expect = case["expect"]
    assert summary["status"] == expect["status"], summary
    if expect["status"] == "failed":
        assert summary["code"] == expect["code"] and summary["error"], summary
        assert where.startswith("batch/out/_rejected/") == expect.get("rejected", False), where
        return
    results = read_json_lines(s3, bucket, summary["results"])
    errors = read_json_lines(s3, bucket, summary["errors"])
    result_lines, error_lines = [r["line"] for r in results], [e["line"] for e in errors]
    if expect.get("every_line_an_error"):
        assert result_lines == [] and error_lines == lines_of(file_body(case))
    else:
        assert (result_lines, error_lines) == (expect["results"], expect["errors"])
        assert all(e["error"] for e in errors)
    assert summary["parts"] == expect.get("parts", 1)  # parts of 1 MB in this stack (see conftest)
    rows = summary["rows"]
    assert rows == summary["scored"] + summary["failed"] == len(results) + len(errors)  # none lost, none doubled


def test_no_bad_key_wrote_outside_batch_out_or_changed_the_registry(stack, dropped):
    s3, bucket = stack["s3"].client(), stack["bucket"]
    after = {
        o["Key"]: o["ETag"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    }
    written = {k for k in after if after[k] != dropped["before"].get(k)} - {c["key"] for c in BATCH_CASES}
    assert written and all(k.startswith("batch/out/") for k in written), sorted(written)[:10]
    registry = {k: v for k, v in dropped["before"].items() if k.startswith("models/")}
    assert {k: v for k, v in after.items() if k.startswith("models/")} == registry


def test_batch_scoring_still_works_after_the_bad_files(stack, dropped):
    s3, bucket = stack["s3"].client(), stack["bucket"]
    key = "batch/in/digits/production/corpus/after.jsonl"
    etag = s3.put_object(Bucket=bucket, Key=key, Body=(CORPUS / "batch" / "mixed.jsonl").read_bytes())["ETag"].strip(
        '"'
    )
    deadline = time.monotonic() + 120
    while (found := find_summary(s3, bucket, key, etag)) is None:
        assert time.monotonic() < deadline, "the good file was not scored"
        time.sleep(0.5)
    assert (found[1]["status"], found[1]["scored"]) == ("succeeded", 6)
