"""One bad row must never cost the file: rows the readers cannot write, hold or parse go to the errors
file with their line; a file whose header lies is refused at the header; memory stays near the line cap."""

from __future__ import annotations

import io
import json
import os
import tracemalloc

import numpy as np
import pytest
from botocore.response import StreamingBody

from maas_core.shared.batch import parse_key, score_object, score_part
from maas_core.shared.batch_io import MAX_LINE_BYTES, BatchFileError, line_parts, read_csv, read_jsonl
from maas_core.shared.manifest import TensorSpec
from maas_core.shared.model_cache import ModelCache

BUCKET = os.environ["MODEL_BUCKET"]
DIGIT = [[[0.0]] * 8] * 8
HEADER = ",".join(["id", *[f"image_{i}" for i in range(64)]])
SPECS = [TensorSpec("image", "float32", (None, 8, 8, 1))]


@pytest.fixture
def models(registry, published):
    return ModelCache(BUCKET, registry=registry)


def put(s3, key: str, data: bytes) -> str:
    return s3.put_object(Bucket=BUCKET, Key=key, Body=data)["ETag"]


def outputs(s3, key: str, etag: str) -> tuple[list[dict], list[dict]]:
    out = parse_key(key, etag).out_prefix

    def read(name: str) -> list[dict]:
        body = s3.get_object(Bucket=BUCKET, Key=out + name)["Body"].read().decode()
        return [json.loads(line) for line in body.splitlines() if line]

    return read("results.jsonl"), read("errors.jsonl")


def score(s3, models, key: str, data: bytes) -> tuple[dict, list[dict], list[dict]]:
    etag = put(s3, key, data)
    summary = score_object(s3, BUCKET, key, etag, models, chunk_rows=4)
    return summary, *outputs(s3, key, etag)


def csv_row(row_id: str, first: str = "0") -> str:
    return ",".join([row_id, first, *["1"] * 63])


def body(data: bytes) -> StreamingBody:
    """The stream botocore hands the readers, over bytes already in memory."""
    return StreamingBody(io.BytesIO(data), len(data))


# -- ids and cells the results file cannot carry ------------------------------------------------
def test_an_id_that_is_nan_or_infinite_fails_its_row_and_the_rest_are_scored(s3, models):
    ids = ['"a"', "NaN", '"b"', "1e999", "-Infinity", '"c"']  # raw JSON: json.loads takes all six
    lines = [f'{{"id": {raw}, "instances": [{json.dumps(DIGIT)}]}}' for raw in ids]
    summary, results, errors = score(s3, models, "batch/in/digits/production/nan-id.jsonl", "\n".join(lines).encode())
    assert (summary["status"], summary["scored"], summary["failed"]) == ("succeeded", 3, 3)
    assert [(r["line"], r["id"]) for r in results] == [(1, "a"), (3, "b"), (6, "c")]
    assert [e["line"] for e in errors] == [2, 4, 5] and all("'id' is NaN or infinite" in e["error"] for e in errors)


def test_every_id_a_client_gives_comes_back_exactly_as_given(s3, models):
    ids = ["123456789012345678901234567890", "-9223372036854775809", "1.5", "7", '"é\\u00e9"', '"\\ud83d\\ude00"']
    lines = [f'{{"id": {raw}, "instances": [{json.dumps(DIGIT)}]}}' for raw in ids]
    summary, results, _ = score(s3, models, "batch/in/digits/production/ids.jsonl", "\n".join(lines).encode())
    assert summary["scored"] == len(ids)
    assert [r["id"] for r in results] == [json.loads(raw) for raw in ids]  # no digit of a long integer lost


def test_a_csv_cell_over_the_csv_field_limit_fails_only_its_line(s3, models):
    lines = [HEADER, csv_row("a"), csv_row("long", "1" * 140_000), csv_row("b")]
    summary, results, errors = score(s3, models, "batch/in/digits/production/long-cell.csv", "\n".join(lines).encode())
    assert (summary["status"], summary["scored"], summary["failed"]) == ("succeeded", 2, 1)
    assert [r["line"] for r in results] == [2, 4]
    assert errors == [{"line": 3, "error": "not valid CSV: field larger than field limit (131072)"}]


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("\u0661", "expected a decimal number"),  # float() reads Arabic-Indic digits
        ("1_0", "expected a decimal number"),  # and underscores
        ("nan", "not a finite number"),
        ("-inf", "not a finite number"),
        ("1e999", "not a finite number"),
        ("0x10", "expected a decimal number"),
    ],
)
def test_a_csv_cell_that_is_not_a_plain_finite_decimal_fails_its_row(cell, reason):
    data = "\n".join([HEADER, csv_row("good", " 2.5e0 "), csv_row("bad", cell)]).encode()
    rows = list(read_csv(body(data), SPECS))
    assert rows[0].error is None and rows[0].instance[0][0] == [2.5]
    assert rows[1].line == 3 and rows[1].id == "bad"
    assert rows[1].error and f"column 'image_0' holds {cell!r}" in rows[1].error and reason in rows[1].error


# -- a UTF-8 BOM -------------------------------------------------------------------------------
def test_a_bom_starts_the_file_not_its_first_row(s3, models):
    bom = b"\xef\xbb\xbf"
    jsonl = bom + "\n".join(json.dumps({"id": f"j{i}", "instances": [DIGIT]}) for i in range(3)).encode()
    summary, results, _ = score(s3, models, "batch/in/digits/production/bom.jsonl", jsonl)
    assert (summary["scored"], [r["id"] for r in results]) == (3, ["j0", "j1", "j2"])
    csv = bom + "\n".join([HEADER, csv_row("c0"), csv_row("c1")]).encode()
    summary, results, _ = score(s3, models, "batch/in/digits/production/bom.csv", csv)
    assert (summary["scored"], [r["id"] for r in results]) == (2, ["c0", "c1"])  # "id" is still the id column


# -- over-long lines ---------------------------------------------------------------------------
def test_an_over_long_line_goes_to_the_errors_file_with_its_length(s3, models):
    good = json.dumps({"id": "g", "instances": [DIGIT]})
    long = json.dumps({"id": "long", "instances": [[0] * (MAX_LINE_BYTES // 2)]})
    data = "\n".join([good, long, good, "x" * (MAX_LINE_BYTES + 1), good]).encode()
    summary, results, errors = score(s3, models, "batch/in/digits/production/long-line.jsonl", data)
    assert (summary["rows"], summary["scored"], summary["failed"]) == (5, 3, 2)
    assert [r["line"] for r in results] == [1, 3, 5]
    assert errors == [
        {"line": 2, "error": f"line is {len(long)} bytes; at most {MAX_LINE_BYTES} are read"},
        {"line": 4, "error": f"line is {MAX_LINE_BYTES + 1} bytes; at most {MAX_LINE_BYTES} are read"},
    ]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_20_mb_line_is_skipped_without_being_held(fmt):
    """The reader holds about the line cap (a read, the open line, one row), not the line."""
    good = json.dumps(DIGIT) if fmt == "jsonl" else csv_row("g")
    data = "\n".join([*([HEADER] if fmt == "csv" else []), good, "7" * 20_000_000, good]).encode()
    stream = body(data)  # allocated before tracing starts: the object's bytes are S3's, not the reader's
    tracemalloc.start()
    try:
        rows = list(read_jsonl(stream) if fmt == "jsonl" else read_csv(stream, SPECS))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [(r.line, r.error is None) for r in rows][1] == (2 + (fmt == "csv"), False)
    assert "line is 20000000 bytes" in str(rows[1].error) and rows[0].error is None and rows[2].error is None
    assert peak < 3 * MAX_LINE_BYTES, f"the reader held {peak} bytes"


class Chunked:
    """A body whose reads return few bytes at a time, as a slow network may."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step = data, step

    def iter_chunks(self, chunk_size: int):
        for i in range(0, len(self.data), self.step):
            yield self.data[i : i + self.step]


def test_line_parts_read_a_header_across_reads_and_cut_around_long_lines():
    csv = (HEADER + "\n").encode() + b"".join(f"{csv_row(str(i))}\n".encode() for i in range(40))
    parts, header = line_parts(Chunked(csv, 100), len(csv), 1000, skip_header=True)
    assert header == (HEADER + "\n").encode() and parts[0][:1] == (len(header),) and parts[0][2] == 2
    lines = [f"short {i}".encode() for i in range(1, 60)]
    lines[29] = b"x" * 5000  # line 30: a hundred parts long
    data = b"\n".join(lines) + b"\n"
    parts, _ = line_parts(Chunked(data, 64), len(data), 50, skip_header=False)
    assert parts[0][0] == 0 and parts[-1][1] == len(data) and len(parts) >= 8
    for (start, end, first_line), following in zip(parts, [*parts[1:], None]):
        assert data[start:end].split(b"\n")[0] == lines[first_line - 1]  # numbered as the whole file
        assert following is None or following[0] == end


def test_a_file_with_an_over_long_line_scores_the_same_in_parts(s3, models):
    good = json.dumps(DIGIT)
    data = "\n".join([good] * 30 + ["9" * (MAX_LINE_BYTES + 10)] + [good] * 30).encode() + b"\n"
    key = "batch/in/digits/production/long-parts.jsonl"
    etag = put(s3, key, data)
    sent: list[dict] = []
    score_object(s3, BUCKET, key, etag, models, chunk_rows=8, part_bytes=5_000, send_parts=sent.extend)
    summary = [score_part(s3, m["maas_batch_part"], models, chunk_rows=8) for m in sent][-1]
    assert (summary["status"], summary["rows"], summary["scored"], summary["failed"]) == ("succeeded", 61, 60, 1)


# -- .npy headers that do not match the data -----------------------------------------------------
def npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def digits_npy(rows: int) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((rows, 8, 8, 1), dtype=np.float32))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (npy_header((10**12, 0)), "a row dimension of 0 holds no values"),  # 128 bytes, a trillion empty rows
        (npy_header((10**6, 8, 8, 1)), "declares 1000000 rows of 256 bytes; 0 bytes of data follow it"),
        (digits_npy(10)[:-1], "declares 10 rows of 256 bytes; 2559 bytes of data follow it"),
        (digits_npy(10) + b"\0" * 256, "declares 10 rows of 256 bytes; 2816 bytes of data follow it"),
        (b"\x93NUMPY\x02\x00" + (2**31).to_bytes(4, "little"), "its header is 2147483648 bytes; at most 10000"),
        (npy_header((3, 2), "<U4") + b"\0" * 96, "only C-ordered numeric .npy arrays"),
    ],
    ids=["zero-dim", "rows-without-data", "truncated", "trailing-bytes", "header-length", "strings"],
)
def test_a_npy_whose_header_does_not_match_its_data_is_refused_before_any_row(s3, models, data, message):
    key = "batch/in/digits/production/lying.npy"
    etag = put(s3, key, data)
    with pytest.raises(BatchFileError) as err:
        score_object(s3, BUCKET, key, etag, models, chunk_rows=4)
    assert message in err.value.message
    written = s3.list_objects_v2(Bucket=BUCKET, Prefix="batch/out/").get("Contents", [])
    assert written == []  # no partial results: the header was refused before any row


def test_a_npy_of_zero_rows_is_scored_as_zero_rows(s3, models):
    summary, results, errors = score(s3, models, "batch/in/digits/production/empty.npy", digits_npy(0))
    assert (summary["status"], summary["rows"], results, errors) == ("succeeded", 0, [], [])


def test_a_wide_csv_header_is_read_from_the_file_not_carried_in_every_part_message(s3, registry, digits_onnx):
    """A queue message holds at most 256 KiB; a header within the documented 100,000 columns may not."""
    from tests_support import digits_manifest

    manifest = digits_manifest()
    manifest["inputs"][0]["columns"] = [f"image_{i}" for i in range(64)]
    registry.publish("wide", digits_onnx, manifest)
    models = ModelCache(BUCKET, registry=registry)
    extra = [f"unused_feature_{i}" for i in range(20_000)]  # about 380 KB of names
    lines = [",".join(["id", *extra, *manifest["inputs"][0]["columns"]])]
    lines += [",".join([f"r{r}", *["0"] * len(extra), *["1"] * 64]) for r in range(12)]
    key = "batch/in/wide/production/wide.csv"
    etag = put(s3, key, ("\n".join(lines) + "\n").encode())
    sent: list[dict] = []
    score_object(s3, BUCKET, key, etag, models, chunk_rows=4, part_bytes=200_000, send_parts=sent.extend)
    assert len(sent) >= 3 and max(len(json.dumps(m)) for m in sent) < 2_000
    summary = [score_part(s3, m["maas_batch_part"], models, chunk_rows=4) for m in sent][-1]
    assert (summary["status"], summary["rows"], summary["scored"]) == ("succeeded", 12, 12)
