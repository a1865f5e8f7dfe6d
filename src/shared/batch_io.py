"""Streaming readers and writers for batch files on S3, with bounded memory.

Readers yield one ``Row`` per input record, numbered as a person would find it in the file (JSON
Lines and CSV: the line number; ``.npy``: the row index). A record that cannot be read is still
yielded, with its error, so it ends up in the errors file instead of disappearing.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.errors import MaasError

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".npy": "npy"}
PART_BYTES = 8 * 1024 * 1024  # S3 multipart parts: at least 5 MiB, so memory stays near this
MAX_CSV_COLUMNS = 100_000


class BatchFileError(MaasError):
    """The file as a whole cannot be scored (format, header, layout): retrying will not help."""

    status = 400
    code = "batch_file_invalid"


@dataclass
class Row:
    line: int
    id: Any = None
    instance: Any = None
    error: str | None = None


def file_format(key: str) -> str:
    for suffix, name in FORMATS.items():
        if key.lower().endswith(suffix):
            return name
    raise BatchFileError(f"unsupported batch file {key.rsplit('/', 1)[-1]!r}", expected=sorted(FORMATS), received=key)


def read_jsonl(stream: Any, first_line: int = 1) -> Iterator[Row]:
    """One instance per line, or {"id": ..., "instances": [...]} / {"id": ..., "inputs": ...} per line."""
    for number, raw in enumerate(_lines(stream), start=first_line):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            yield Row(line=number, error=f"not valid JSON: {exc.__class__.__name__}")
            continue
        if isinstance(record, dict) and ("instances" in record or "inputs" in record):
            row_id = record.get("id")
            if "instances" in record:
                instances = record["instances"]
                if not isinstance(instances, list) or len(instances) != 1:
                    yield Row(line=number, id=row_id, error="'instances' must hold exactly one instance per line")
                    continue
                yield Row(line=number, id=row_id, instance=instances[0])
            else:
                yield Row(line=number, id=row_id, instance=record["inputs"])
        else:
            yield Row(line=number, instance=record)


def csv_header(line: bytes) -> list[str]:
    return next(csv.reader([line.decode("utf-8", errors="replace").rstrip("\r\n")]), [])


def line_parts(stream: Any, size: int, part_bytes: int, skip_header: bool) -> tuple[list[tuple[int, int, int]], bytes]:
    """Cut a line-oriented file into parts of about ``part_bytes`` on line boundaries, in one pass.

    Returns ``[(start, end, first line number)]`` and the header line (CSV) or b"". Counting the
    newlines is what lets every part number its rows as the whole file does.
    """
    starts, header = [(0, 1)], b""
    offset = newlines = 0
    target = part_bytes
    for chunk in stream.iter_chunks(chunk_size=8 * 1024 * 1024):
        if skip_header and offset == 0 and not header:
            end = chunk.find(b"\n")
            if end == -1:
                raise BatchFileError("the CSV header line is longer than 8 MiB")
            header = chunk[: end + 1]
            starts = [(end + 1, 2)]
            target = end + 1 + part_bytes
        search = 0
        while target < offset + len(chunk):
            newline = chunk.find(b"\n", max(target - offset, search))
            if newline == -1:
                break
            boundary = offset + newline + 1
            if boundary < size:
                starts.append((boundary, newlines + chunk.count(b"\n", 0, newline + 1) + 1))
            target = boundary + part_bytes
            search = newline + 1
        newlines += chunk.count(b"\n")
        offset += len(chunk)
    ends = [start for start, _ in starts[1:]] + [size]
    return [(start, end, line) for (start, line), end in zip(starts, ends, strict=True)], header


def _lines(stream: Any) -> Iterator[str]:
    """Lines ended by b"\n" (a "\r\n" ending loses its "\r"), as ``line_parts`` counts them: botocore's
    iter_lines also breaks at a lone "\r", which would number the rows of a part differently."""
    pending = b""
    for chunk in stream.iter_chunks(chunk_size=1024 * 1024):
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for raw in lines:
            yield raw.removesuffix(b"\r").decode("utf-8", errors="replace")
    if pending:
        yield pending.removesuffix(b"\r").decode("utf-8", errors="replace")


def read_csv(
    stream: Any, specs: list[dict[str, Any]], header: list[str] | None = None, first_line: int = 2
) -> Iterator[Row]:
    """A header row, then one instance per line; columns map to inputs by the manifest.

    An input takes the columns its manifest lists (``columns``), else those named ``<input>`` or
    ``<input>_<i>``; a model with one input takes every column but ``id`` when none match. Values
    fill the input's shape in row-major order.
    """
    reader = csv.reader(_lines(stream))
    if header is None:  # a part after the first is given the file's header
        try:
            header = next(reader)
        except StopIteration:
            raise BatchFileError("the CSV file is empty; expected a header row") from None
    mapping = check_csv_header(header, specs)
    id_index = header.index("id") if "id" in header else None
    for number, cells in enumerate(reader, start=first_line):
        if not cells:
            continue
        if len(cells) != len(header):
            yield Row(line=number, error=f"{len(cells)} cells; the header has {len(header)}")
            continue
        row_id = cells[id_index] if id_index is not None else None
        try:
            values = {name: [float(cells[i]) for i in idx] for name, idx in mapping.items()}
        except ValueError:
            yield Row(line=number, id=row_id, error="a cell is not a number")
            continue
        instance = {
            s["name"]: np.asarray(values[s["name"]]).reshape([d or 1 for d in s["shape"][1:]]).tolist() for s in specs
        }
        yield Row(line=number, id=row_id, instance=instance if len(specs) > 1 else instance[specs[0]["name"]])


def check_csv_header(header: list[str], specs: list[dict[str, Any]]) -> dict[str, list[int]]:
    """The columns each input takes, or BatchFileError for a header the inputs cannot be read from."""
    if len(header) > MAX_CSV_COLUMNS:
        raise BatchFileError(
            f"the CSV header has {len(header)} columns; at most {MAX_CSV_COLUMNS} are read",
            expected=f"at most {MAX_CSV_COLUMNS} columns",
            received=len(header),
        )
    mapping = {}
    for spec in specs:
        name = spec["name"]
        wanted = spec.get("columns")
        if wanted:
            missing = [c for c in wanted if c not in header]
            if missing:
                raise BatchFileError(f"CSV lacks columns for input {name!r}", expected=wanted, missing=missing[:20])
            idx = [header.index(c) for c in wanted]
        else:
            idx = [i for i, c in enumerate(header) if c == name or c.startswith((f"{name}_", f"{name}."))]
            if not idx and len(specs) == 1:
                idx = [i for i, c in enumerate(header) if c != "id"]
        size = math.prod(d or 1 for d in spec["shape"][1:])
        if len(idx) != size:
            raise BatchFileError(
                f"CSV has {len(idx)} columns for input {name!r}; its shape {spec['shape'][1:]} needs {size}",
                input=name,
                expected=size,
                received=len(idx),
            )
        mapping[name] = idx
    return mapping


class _Reader(io.RawIOBase):
    """Blocking reads of exactly n bytes (or to the end) from a streaming body."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            return bytes(self.stream.read())
        chunks, left = [], size
        while left > 0:
            chunk = self.stream.read(left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


def read_npy(stream: Any, rows_per_read: int = 1024) -> Iterator[Row]:
    """Rows of a C-ordered numeric .npy array, read a block at a time from the stream."""
    reader = _Reader(stream)
    try:
        version = np.lib.format.read_magic(reader)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(reader)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(reader)
        else:
            raise ValueError(f"format version {version} is not read")
    except ValueError as exc:
        raise BatchFileError(f"not a .npy file: {exc}") from None
    if fortran or dtype.hasobject or not shape:
        raise BatchFileError("only C-ordered numeric .npy arrays with a row dimension are read", received=str(dtype))
    row_shape = shape[1:]
    row_bytes = dtype.itemsize * math.prod(row_shape)
    for start in range(0, shape[0], rows_per_read):
        count = min(rows_per_read, shape[0] - start)
        block = reader.read(row_bytes * count)
        if len(block) != row_bytes * count:
            raise BatchFileError(f"the .npy file ends early at row {start + len(block) // max(row_bytes, 1)}")
        array = np.frombuffer(block, dtype=dtype).reshape((count, *row_shape))
        for offset in range(count):
            yield Row(line=start + offset, instance=array[offset].tolist())


class S3Writer:
    """Writes an object as it is produced (multipart above one part), so memory stays bounded."""

    def __init__(self, s3: Any, bucket: str, key: str, content_type: str) -> None:
        self.s3, self.bucket, self.key, self.content_type = s3, bucket, key, content_type
        self.buffer = io.BytesIO()
        self.parts: list[dict[str, Any]] = []
        self.upload_id: str | None = None
        self.bytes = 0

    def write_line(self, record: dict[str, Any]) -> None:
        data = json.dumps(record, separators=(",", ":"), allow_nan=False).encode() + b"\n"
        self.buffer.write(data)
        self.bytes += len(data)
        if self.buffer.tell() >= PART_BYTES:
            self._flush_part()

    def _flush_part(self) -> None:
        if self.upload_id is None:
            self.upload_id = self.s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self.content_type
            )["UploadId"]
        number = len(self.parts) + 1
        response = self.s3.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=self.buffer.getvalue()
        )
        self.parts.append({"ETag": response["ETag"], "PartNumber": number})
        self.buffer = io.BytesIO()

    def close(self) -> None:
        if self.upload_id is None:
            self.s3.put_object(
                Bucket=self.bucket, Key=self.key, Body=self.buffer.getvalue(), ContentType=self.content_type
            )
            return
        if self.buffer.tell():
            self._flush_part()
        self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": self.parts}
        )

    def abort(self) -> None:
        if self.upload_id is not None:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
