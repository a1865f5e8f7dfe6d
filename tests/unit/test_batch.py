"""Batch scoring of whole files on a moto S3: every row scored or reported, outputs idempotent."""

import io
import json
import os

import numpy as np
import pytest

from maas_core.shared.batch import parse_key, score_object
from maas_core.shared.batch_io import BatchFileError
from maas_core.shared.errors import ModelNotFound
from maas_core.shared.model_cache import ModelCache

BUCKET = os.environ["MODEL_BUCKET"]


@pytest.fixture
def images():
    from sklearn.datasets import load_digits

    return load_digits().images[:50, :, :, None]


@pytest.fixture
def models(registry, published):
    return ModelCache(BUCKET, registry=registry)


def put(s3, key: str, data: bytes) -> str:
    return s3.put_object(Bucket=BUCKET, Key=key, Body=data)["ETag"]


def read_lines(s3, key: str) -> list[dict]:
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines() if line]


def single_request_labels(models, images) -> list[str]:
    from maas_core.shared.inference import feeds_from_body, format_predictions, run

    model = models.get("digits")
    return [
        p["label"]
        for p in format_predictions(model, run(model, feeds_from_body({"instances": images.tolist()}, model, 100)))
    ]


def jsonl_with_bad_rows(images) -> bytes:
    lines = [json.dumps({"id": f"r{i}", "instances": [img.tolist()]}) for i, img in enumerate(images)]
    lines.insert(10, "{not json")  # line 11
    lines.insert(20, json.dumps([[0.0] * 8] * 8))  # line 21: wrong shape
    lines.insert(30, json.dumps([[["x"]] * 8] * 8))  # line 31: not numbers
    return ("\n".join(lines) + "\n").encode()


def test_every_row_is_scored_or_reported_with_its_line(s3, models, images):
    key = "batch/in/digits/production/day1/input.jsonl"
    etag = put(s3, key, jsonl_with_bad_rows(images))
    summary = score_object(s3, BUCKET, key, etag, models, chunk_rows=16)
    out = parse_key(key, etag).out_prefix
    results, errors = read_lines(s3, out + "results.jsonl"), read_lines(s3, out + "errors.jsonl")
    assert (summary["rows"], summary["scored"], summary["failed"]) == (53, 50, 3)
    assert [e["line"] for e in errors] == [11, 21, 31] and all(e["error"] for e in errors)
    assert [r["id"] for r in results] == [f"r{i}" for i in range(50)]
    assert [r["prediction"]["label"] for r in results] == single_request_labels(models, images)
    assert summary["version"] == models.get("digits").version


def test_csv_and_npy_give_the_same_predictions_as_jsonl(s3, models, images):
    header = ",".join(["id", *[f"image_{i}" for i in range(64)]])
    csv_rows = [",".join([f"r{i}", *map(str, img.reshape(-1).tolist())]) for i, img in enumerate(images)]
    buffer = io.BytesIO()
    np.save(buffer, images.astype(np.float32))
    labels = single_request_labels(models, images)
    for name, data in (("x.csv", "\n".join([header, *csv_rows]).encode()), ("x.npy", buffer.getvalue())):
        key = f"batch/in/digits/production/{name}"
        etag = put(s3, key, data)
        summary = score_object(s3, BUCKET, key, etag, models, chunk_rows=7)
        assert summary["scored"] == 50 and summary["failed"] == 0, summary
        results = read_lines(s3, parse_key(key, etag).out_prefix + "results.jsonl")
        assert [r["prediction"]["label"] for r in results] == labels


def test_a_repeated_delivery_leaves_one_set_of_outputs(s3, models, images):
    key = "batch/in/digits/production/again.jsonl"
    etag = put(s3, key, jsonl_with_bad_rows(images))
    first = score_object(s3, BUCKET, key, etag, models, chunk_rows=16)
    second = score_object(s3, BUCKET, key, etag, models, chunk_rows=16)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="batch/out/")["Contents"]]
    assert sorted(k.rsplit("/", 1)[1] for k in keys) == ["errors.jsonl", "results.jsonl", "summary.json"]
    assert second["skipped"] and second["rows"] == first["rows"]


def test_an_event_for_a_replaced_object_is_skipped(s3, models, images):
    key = "batch/in/digits/production/replaced.jsonl"
    old = put(s3, key, jsonl_with_bad_rows(images[:5]))
    put(s3, key, jsonl_with_bad_rows(images[:6]))
    assert score_object(s3, BUCKET, key, old, models, chunk_rows=16)["status"] == "skipped"


@pytest.mark.parametrize(
    "key",
    [
        "batch/in/digits/file.jsonl",
        "batch/in/Digits/production/f.jsonl",
        "batch/in/digits/production/../f.jsonl",
        "other/f.jsonl",
    ],
)
def test_bad_keys_are_refused(key):
    with pytest.raises(Exception) as err:
        parse_key(key, '"abc"')
    assert getattr(err.value, "status", 500) == 400


def test_unknown_model_and_unsupported_format(s3, models):
    etag = put(s3, "batch/in/nope/production/f.jsonl", b"[]\n")
    with pytest.raises(ModelNotFound):
        score_object(s3, BUCKET, "batch/in/nope/production/f.jsonl", etag, models, chunk_rows=4)
    etag = put(s3, "batch/in/digits/production/f.parquet", b"PAR1")
    with pytest.raises(BatchFileError):
        score_object(s3, BUCKET, "batch/in/digits/production/f.parquet", etag, models, chunk_rows=4)


def test_binary_garbage_ends_in_the_errors_file(s3, models):
    key = "batch/in/digits/production/garbage.jsonl"
    etag = put(s3, key, bytes(range(256)) * 40)
    summary = score_object(s3, BUCKET, key, etag, models, chunk_rows=4)
    assert summary["scored"] == 0 and summary["failed"] == summary["rows"] > 0


def test_line_parts_cut_on_newlines_and_number_lines_like_the_whole_file():
    from maas_core.shared.batch_io import line_parts

    class Body:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def iter_chunks(self, chunk_size: int):
            for i in range(0, len(self.data), 7):  # chunks far smaller than lines: boundaries straddle them
                yield self.data[i : i + 7]

    data = b"".join(f"line {i} {'x' * (i % 13)}\n".encode() for i in range(1, 400))
    parts, header = line_parts(Body(data), len(data), 500, skip_header=False)
    assert header == b"" and parts[0][0] == 0 and parts[-1][1] == len(data) and len(parts) > 5
    for (start, end, first_line), following in zip(parts, [*parts[1:], None]):
        assert start == 0 or data[start - 1 : start] == b"\n"
        assert data[start:end].split(b"\n")[0].startswith(f"line {first_line} ".encode())
        assert following is None or following[0] == end
    csv = b"id,a\n" + b"".join(f"{i},{i}\n".encode() for i in range(300))
    parts, header = line_parts(Body(csv), len(csv), 200, skip_header=True)
    assert header == b"id,a\n" and parts[0][:1] == (5,) and parts[0][2] == 2


def test_a_large_file_is_fanned_out_in_parts_and_summarised_once(s3, models, images):
    import random

    key = "batch/in/digits/production/big.jsonl"
    data = jsonl_with_bad_rows(images)
    etag = put(s3, key, data)
    sent: list[dict] = []
    fanned = score_object(
        s3, BUCKET, key, etag, models, chunk_rows=8, part_bytes=len(data) // 6, send_parts=sent.extend
    )
    assert fanned["status"] == "fanned_out" and fanned["parts"] == len(sent) >= 5
    random.Random(1).shuffle(sent)  # parts finish in any order, on any container
    from maas_core.shared.batch import score_part

    outcomes = [score_part(s3, m["maas_batch_part"], models, chunk_rows=8) for m in sent]
    assert [o["status"] for o in outcomes].count("succeeded") == 1 and outcomes[-1]["status"] == "succeeded"
    summary = outcomes[-1]
    assert (summary["rows"], summary["scored"], summary["failed"]) == (53, 50, 3)
    results = [r for uri in summary["results"] for r in read_lines(s3, uri.removeprefix(f"s3://{BUCKET}/"))]
    errors = [e for uri in summary["errors"] for e in read_lines(s3, uri.removeprefix(f"s3://{BUCKET}/"))]
    assert [e["line"] for e in errors] == [11, 21, 31]
    assert [r["id"] for r in results] == [f"r{i}" for i in range(50)]
    assert [r["prediction"]["label"] for r in results] == single_request_labels(models, images)
    again = score_part(s3, sent[0]["maas_batch_part"], models, chunk_rows=8)  # a redelivered part
    assert again["rows"] == summary["rows"]


def test_a_row_whose_outputs_are_not_finite_goes_to_the_errors_file(s3, registry):
    """float32 overflows inside the graph (3e38 * 2 + ...): JSON cannot carry the result, and that row
    must not sink the other rows of the file."""
    from tests_support import build_two_input_onnx, two_input_manifest

    registry.publish("blend", build_two_input_onnx(), two_input_manifest())
    models = ModelCache(BUCKET, registry=registry)
    good, overflow = {"features": [1, 2, 3], "extra": [4, 5]}, {"features": [3e38, 3e38, 3e38], "extra": [0, 0]}
    rows = [good, overflow, {"features": [1], "extra": [4, 5]}, good, overflow, good]
    key = "batch/in/blend/production/overflow.jsonl"
    etag = put(s3, key, "".join(json.dumps(r) + "\n" for r in rows).encode())
    summary = score_object(s3, BUCKET, key, etag, models, chunk_rows=4)
    out = parse_key(key, etag).out_prefix
    assert (summary["rows"], summary["scored"], summary["failed"]) == (6, 3, 3)
    errors = read_lines(s3, out + "errors.jsonl")
    assert [e["line"] for e in errors] == [2, 3, 5]  # in line order, input errors and output errors alike
    assert [r["line"] for r in read_lines(s3, out + "results.jsonl")] == [1, 4, 6]
    assert "NaN or infinite" in errors[0]["error"] and "shape" in errors[1]["error"]


def test_a_csv_header_that_cannot_be_read_fails_the_file_before_it_is_fanned_out(s3, models):
    key = "batch/in/digits/production/wide.csv"
    data = b"id,a,b\n" + b"".join(f"{i},1,2\n".encode() for i in range(200))
    etag = put(s3, key, data)
    sent: list[dict] = []
    with pytest.raises(BatchFileError) as err:
        score_object(s3, BUCKET, key, etag, models, chunk_rows=8, part_bytes=300, send_parts=sent.extend)
    assert "columns for input 'image'" in err.value.message and sent == []


def test_a_csv_that_is_all_header_is_scored_as_zero_rows_not_cut_into_empty_parts(s3, models):
    key = "batch/in/digits/production/header-only.csv"
    etag = put(s3, key, (",".join(f"image_{i}" for i in range(64)) + "\n").encode())
    sent: list[dict] = []
    summary = score_object(s3, BUCKET, key, etag, models, chunk_rows=8, part_bytes=100, send_parts=sent.extend)
    assert sent == [] and (summary["status"], summary["rows"]) == ("succeeded", 0)


def test_rows_break_only_at_newlines_so_parts_number_them_like_the_whole_file(s3, models, images):
    """A lone carriage return (binary garbage has them) is not a line break for the part cutter, so
    it must not be one for the readers either: every line number once, in the whole file and in parts."""
    from maas_core.shared.batch import score_part

    lines = [json.dumps(img.tolist()) for img in images[:30]]
    lines[4] = "garbage\rmore garbage"
    lines[12] = lines[12] + "\r"  # a CRLF ending is still one line
    data = ("\n".join(lines) + "\n").encode()
    whole_key, parts_key = "batch/in/digits/production/cr-whole.jsonl", "batch/in/digits/production/cr-parts.jsonl"
    whole = score_object(s3, BUCKET, whole_key, put(s3, whole_key, data), models, chunk_rows=4)
    sent: list[dict] = []
    etag = put(s3, parts_key, data)
    score_object(s3, BUCKET, parts_key, etag, models, chunk_rows=4, part_bytes=len(data) // 5, send_parts=sent.extend)
    summary = [score_part(s3, m["maas_batch_part"], models, chunk_rows=4) for m in sent][-1]
    for done in (whole, summary):
        assert (done["rows"], done["scored"], done["failed"]) == (30, 29, 1)
        uris = done["results"] + done["errors"]
        numbers = sorted(r["line"] for uri in uris for r in read_lines(s3, uri.removeprefix(f"s3://{BUCKET}/")))
        assert numbers == list(range(1, 31))


@pytest.mark.parametrize("key", ["batch/in/digits/production/../../models/digits/x.jsonl", "batch/in/Dïgits/p/x.jsonl"])
def test_a_key_that_names_no_model_gets_its_failed_summary_under_rejected(s3, key):
    from maas_core.shared.batch import write_failure
    from maas_core.shared.layout import REJECTED_PREFIX

    with pytest.raises(Exception) as err:
        parse_key(key, '"abc"')
    write_failure(s3, BUCKET, key, '"abc"', err.value)
    (found,) = s3.list_objects_v2(Bucket=BUCKET, Prefix="batch/out/")["Contents"]
    assert found["Key"].startswith(REJECTED_PREFIX) and found["Key"].endswith("/summary.json")
    summary = json.loads(s3.get_object(Bucket=BUCKET, Key=found["Key"])["Body"].read())
    assert summary["status"] == "failed" and summary["input"] == f"s3://{BUCKET}/{key}" and summary["code"]


def _sequence_sum_model() -> tuple[bytes, dict]:
    """A real model with a free dimension besides the batch: total = sum(values) over any length."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tests_support import two_input_manifest

    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["values", "axes"], ["total"], keepdims=1)],
        "sequence_sum",
        [helper.make_tensor_value_info("values", TensorProto.FLOAT, [None, None])],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, [None, 1])],
        initializer=[numpy_helper.from_array(np.array([1], dtype="int64"), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    manifest = two_input_manifest()
    manifest.update(
        inputs=[{"name": "values", "dtype": "float32", "shape": [None, None]}],
        outputs=[{"name": "total", "dtype": "float32", "shape": [None, 1]}],
    )
    return model.SerializeToString(), manifest


def test_rows_of_different_lengths_are_each_scored_when_the_model_takes_any_length(s3, registry):
    """A chunk is read as one batch; rows that cannot share one (a free dimension they disagree on)
    are batched by shape, each row's prediction still its own, and a bad row still only fails itself."""
    registry.publish("seqsum", *_sequence_sum_model())
    models = ModelCache(BUCKET, registry=registry)
    rows = [[1, 2], [1, 2, 3], ["x"], [4, 5], [10]]
    key = "batch/in/seqsum/production/ragged.jsonl"
    etag = put(s3, key, "".join(json.dumps(r) + "\n" for r in rows).encode())
    summary = score_object(s3, BUCKET, key, etag, models, chunk_rows=8)
    out = parse_key(key, etag).out_prefix
    assert (summary["rows"], summary["scored"], summary["failed"]) == (5, 4, 1)
    results = read_lines(s3, out + "results.jsonl")
    assert [(r["line"], r["prediction"]["total"]) for r in results] == [(1, [3.0]), (2, [6.0]), (4, [9.0]), (5, [10.0])]
    assert [e["line"] for e in read_lines(s3, out + "errors.jsonl")] == [3]
