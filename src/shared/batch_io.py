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
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from maas_core.shared import json_codec, tensor_json
from maas_core.shared.errors import BatchFileError

if TYPE_CHECKING:
    from maas_core.shared.manifest import TensorSpec

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".npy": "npy"}
PART_BYTES = 8 * 1024 * 1024  # S3 multipart parts: at least 5 MiB, so memory stays near this
MAX_CSV_COLUMNS = 100_000
# One JSON Lines or CSV row (ARCHITECTURE.md, Batch): a longer line goes to the errors file with its
# number and is skipped as it streams, so a reader holds about this much whatever the input holds.
MAX_LINE_BYTES = 1024 * 1024
MAX_HEADER_BYTES = 8 * 1024 * 1024  # a CSV header line; past it the file is refused
READ_BYTES = 256 * 1024  # one read from the stream; at most MAX_LINE_BYTES
NPY_READ_BYTES = 8 * 1024 * 1024  # .npy data read at a time (whole rows, at least one)
NPY_MAX_HEADER_BYTES = 10_000  # numpy's own bound on a .npy header (read_array_header_*'s max_header_size)
BOM = b"\xef\xbb\xbf"
# A CSV cell is a plain ASCII decimal number: float() alone also takes other scripts'
# digits (Arabic-Indic one), "1_0", "nan" and "inf".
# Possessive quantifiers: no backtracking, so a megabyte of digits fails in linear time.
_NUMBER_RE = r"[ \t]*+[+-]?+(?:[0-9]++(?:\.[0-9]*+)?+|\.[0-9]++)(?:[eE][+-]?+[0-9]++)?+[ \t]*+"
_NUMBER = re.compile(_NUMBER_RE)
_NUMBERS = re.compile(rf"(?:{_NUMBER_RE}\n)*+{_NUMBER_RE}")  # cells joined by "\n", which no cell of a line holds


@dataclass
class Row:
    line: int
    id: Any = None
    instance: Any = None
    error: str | None = None
    size: int = 0  # bytes read for it: a chunk of rows is bounded in bytes as well as in rows


def file_format(key: str) -> str:
    for suffix, name in FORMATS.items():
        if key.lower().endswith(suffix):
            return name
    raise BatchFileError(f"unsupported batch file {key.rsplit('/', 1)[-1]!r}", expected=sorted(FORMATS), received=key)


def too_long(length: int) -> str:
    return f"line is {length} bytes; at most {MAX_LINE_BYTES} are read"


def read_jsonl(stream: Any, first_line: int = 1) -> Iterator[Row]:
    """One instance per line, or {"id": ..., "instances": [...]} / {"id": ..., "inputs": ...} per line."""
    for number, raw in enumerate(_lines(stream), start=first_line):
        if isinstance(raw, int):
            yield Row(line=number, error=too_long(raw))
            continue
        # Its instance straight into numpy when it is an array of numbers (shared.tensor_json), else as JSON.
        record = tensor_json.loads_line(raw)
        if record is None:
            try:
                record = orjson.loads(raw)  # the line's bytes as they are: most lines are plain JSON
            except orjson.JSONDecodeError:  # or blank, a BOM, broken UTF-8, NaN ...: read as before
                text = raw.decode("utf-8", errors="replace")
                if number == 1:
                    text = text.removeprefix("\ufeff")  # a UTF-8 BOM starts the file, not row 1
                if not text.strip():
                    continue
                try:
                    record = json.loads(text)
                except (ValueError, RecursionError) as exc:
                    yield Row(line=number, error=f"not valid JSON: {exc.__class__.__name__}", size=len(raw))
                    continue
        if isinstance(record, dict) and isinstance(record.get("id"), float):
            record = json.loads(raw)  # orjson reads an integer past 64 bits as a float: an id keeps every digit
        if isinstance(record, dict) and ("instances" in record or "inputs" in record):
            row_id = record.get("id")
            # json.loads takes NaN and 1e999 (and an id may nest past what can be written): the results file
            # cannot carry them. A string or an integer always can.
            if not isinstance(row_id, str | int | None) and not _writable(row_id):
                yield Row(line=number, error="'id' is NaN or infinite; an id is a string or a finite number")
                continue
            if "instances" in record:
                instances = record["instances"]
                if not isinstance(instances, list) or len(instances) != 1:
                    yield Row(line=number, id=row_id, error="'instances' must hold exactly one instance per line")
                    continue
                yield Row(line=number, id=row_id, instance=instances[0], size=len(raw))
            else:
                yield Row(line=number, id=row_id, instance=record["inputs"], size=len(raw))
        else:
            yield Row(line=number, instance=record, size=len(raw))


def _writable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        return False
    return True


def csv_header(line: bytes) -> list[str]:
    text = line.removeprefix(BOM).decode("utf-8", errors="replace").rstrip("\r\n")
    try:
        return next(csv.reader([text]), [])
    except csv.Error as exc:
        raise BatchFileError(f"the CSV header line cannot be read: {exc}") from None


def line_parts(stream: Any, size: int, part_bytes: int, skip_header: bool) -> tuple[list[tuple[int, int, int]], bytes]:
    """Cut a line-oriented file into parts of about ``part_bytes`` on line boundaries, in one pass.

    Returns ``[(start, end, first line number)]`` and the header line (CSV) or b"". Counting the
    newlines is what lets every part number its rows as the whole file does. Memory is one read,
    whatever the lines' lengths: a line longer than a part makes a longer part, and its reader skips it.
    """
    starts, header = [(0, 1)], b""
    offset = newlines = 0
    target = part_bytes
    pending = b"" if skip_header else None  # the header line while it is read, across reads
    for chunk in stream.iter_chunks(chunk_size=PART_BYTES):
        if pending is not None:
            end = chunk.find(b"\n")
            if end == -1:
                pending += chunk[: MAX_HEADER_BYTES + 1 - len(pending)]
            elif len(pending) + end <= MAX_HEADER_BYTES:
                header, pending = pending + chunk[: end + 1], None
                starts = [(len(header), 2)]
                target = len(header) + part_bytes
            if pending is not None and (end != -1 or len(pending) > MAX_HEADER_BYTES):
                raise BatchFileError(f"the CSV header line is longer than {MAX_HEADER_BYTES} bytes")
            if pending is not None:  # no row starts before the header ends
                offset += len(chunk)
                continue
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
    if pending:  # a header with no newline: the whole file
        header, starts = pending, [(size, 2)]
    ends = [start for start, _ in starts[1:]] + [size]
    return [(start, end, line) for (start, line), end in zip(starts, ends, strict=True)], header


def _lines(stream: Any, first_limit: int = MAX_LINE_BYTES) -> Iterator[bytes | int]:
    """Lines ended by b"\n" (a "\r\n" ending loses its "\r"), as ``line_parts`` counts them: botocore's
    iter_lines also breaks at a lone "\r", which would number the rows of a part differently.

    A line longer than ``MAX_LINE_BYTES`` (the first: ``first_limit``) comes as its length, an int: it
    is counted as it streams, never held, so memory stays near the limit whatever the file holds.
    """
    head, skipped, limit = b"", 0, first_limit  # the open line's start, or the length of one being skipped
    for chunk in stream.iter_chunks(chunk_size=READ_BYTES):
        *ended, last = chunk.split(b"\n")
        for piece in ended:
            length = (skipped or len(head)) + len(piece)
            if skipped or length > limit:
                yield length
            else:
                yield (head + piece if head else piece).removesuffix(b"\r")
            head, skipped, limit = b"", 0, MAX_LINE_BYTES
        length = (skipped or len(head)) + len(last)
        if skipped or length > limit:
            head, skipped = b"", length
        else:
            head += last
    if skipped:
        yield skipped
    elif head:
        yield head.removesuffix(b"\r")


def read_csv(
    stream: Any, specs: Sequence[TensorSpec], header: list[str] | None = None, first_line: int = 2
) -> Iterator[Row]:
    """A header row, then one instance per line; columns map to inputs by the manifest.

    An input takes the columns its manifest lists (``columns``), else those named ``<input>`` or
    ``<input>_<i>``; a model with one input takes every column but ``id`` when none match. Values
    fill the input's shape in row-major order. A row is one line (a quoted newline is not read), so
    rows are numbered as ``line_parts`` counts them, and a line that is not CSV fails only itself.
    """
    lines = _lines(stream, first_limit=MAX_LINE_BYTES if header is not None else MAX_HEADER_BYTES)
    if header is None:  # a part after the first is given the file's header
        first = next(lines, None)
        if first is None:
            raise BatchFileError("the CSV file is empty; expected a header row")
        if isinstance(first, int):
            raise BatchFileError(f"the CSV header line is {first} bytes; at most {MAX_HEADER_BYTES} are read")
        header = csv_header(first)
    mapping = check_csv_header(header, specs)
    columns = [i for idx in mapping.values() for i in idx]  # every input's, in the order of specs
    id_index = header.index("id") if "id" in header else None
    for number, raw in enumerate(lines, start=first_line):
        if isinstance(raw, int):
            yield Row(line=number, error=too_long(raw))
            continue
        text = raw.decode("utf-8", errors="replace")
        if not text.strip():
            continue
        try:
            cells = next(csv.reader((text,)))
        except csv.Error as exc:  # a cell over the csv module's field limit (131,072 characters), ...
            yield Row(line=number, error=f"not valid CSV: {exc}", size=len(raw))
            continue
        if len(cells) != len(header):
            yield Row(line=number, error=f"{len(cells)} cells; the header has {len(header)}", size=len(raw))
            continue
        row_id = cells[id_index] if id_index is not None else None
        values = _numbers(header, cells, columns)
        if isinstance(values, str):
            yield Row(line=number, id=row_id, error=values, size=len(raw))
            continue
        instance, start = {}, 0
        for spec in specs:
            count = len(mapping[spec.name])
            shape = [d or 1 for d in spec.shape[1:]]
            instance[spec.name] = np.asarray(values[start : start + count]).reshape(shape).tolist()
            start += count
        yield Row(
            line=number, id=row_id, instance=instance if len(specs) > 1 else instance[specs[0].name], size=len(raw)
        )


def _numbers(header: list[str], cells: list[str], columns: list[int]) -> list[float] | str:
    """The cells of these columns as floats, or why they are not all plain finite decimal numbers."""
    picked = [cells[i] for i in columns]
    if not _NUMBERS.fullmatch("\n".join(picked)):  # one match per row; cell by cell only to name the bad one
        bad = next(i for i, cell in zip(columns, picked, strict=True) if not _NUMBER.fullmatch(cell))
        return _not_a_number(header[bad], cells[bad])
    values = list(map(float, picked))
    if not all(map(math.isfinite, values)):  # 1e999
        bad = next(i for i, value in zip(columns, values, strict=True) if not math.isfinite(value))
        return _not_a_number(header[bad], cells[bad])
    return values


def _not_a_number(column: str, cell: str) -> str:
    try:
        finite = math.isfinite(float(cell))
    except ValueError:
        finite = True
    if not finite:  # "nan", "inf", "1e999": float() reads them, the model must not get them
        return f"column {column!r} holds {cell[:40]!r}, which is not a finite number"
    return f"column {column!r} holds {cell[:40]!r}; expected a decimal number such as 3, -0.5 or 1e-3"


def check_csv_header(header: list[str], specs: Sequence[TensorSpec]) -> dict[str, list[int]]:
    """The columns each input takes, or BatchFileError for a header the inputs cannot be read from."""
    if len(header) > MAX_CSV_COLUMNS:
        raise BatchFileError(
            f"the CSV header has {len(header)} columns; at most {MAX_CSV_COLUMNS} are read",
            expected=f"at most {MAX_CSV_COLUMNS} columns",
            received=len(header),
        )
    mapping = {}
    for spec in specs:
        name = spec.name
        wanted = list(spec.columns or ())
        if wanted:
            missing = [c for c in wanted if c not in header]
            if missing:
                raise BatchFileError(f"CSV lacks columns for input {name!r}", expected=wanted, missing=missing[:20])
            idx = [header.index(c) for c in wanted]
        else:
            idx = [i for i, c in enumerate(header) if c == name or c.startswith((f"{name}_", f"{name}."))]
            if not idx and len(specs) == 1:
                idx = [i for i, c in enumerate(header) if c != "id"]
        size = math.prod(d or 1 for d in spec.shape[1:])
        if len(idx) != size:
            raise BatchFileError(
                f"CSV has {len(idx)} columns for input {name!r}; its shape {list(spec.shape[1:])} needs {size}",
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


def read_npy(stream: Any, size: int) -> Iterator[Row]:
    """Rows of a C-ordered numeric .npy array of ``size`` bytes, read a block at a time from the stream.

    The header is checked against the size before any row is read: its length first (numpy's own
    bound), then that the rows it declares are exactly the bytes that follow. A header that lies
    (a zero-size row dimension, a million rows in 128 bytes, a truncated file) refuses the file
    instead of driving reads, rows or output that the data does not hold.
    """
    reader = _Reader(stream)
    try:
        prefix = reader.read(8)  # the magic string and the format version
        version = np.lib.format.read_magic(io.BytesIO(prefix))
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"format version {version} is not read")
        length_field = reader.read(2 if version == (1, 0) else 4)
        header_bytes = int.from_bytes(length_field, "little")
        if header_bytes > NPY_MAX_HEADER_BYTES:
            raise ValueError(f"its header is {header_bytes} bytes; at most {NPY_MAX_HEADER_BYTES} are read")
        header = io.BytesIO(length_field + reader.read(header_bytes))
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(header)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(header)
    except (ValueError, SyntaxError, TypeError) as exc:
        raise BatchFileError(f"not a .npy file: {str(exc)[:200]}") from None
    if fortran or dtype.kind not in "biuf" or not shape:
        raise BatchFileError(
            "only C-ordered numeric .npy arrays with a row dimension are read",
            expected="bool, integer or float, C order, at least one dimension",
            received=f"{dtype.str}, {'Fortran' if fortran else 'C'} order, shape {list(shape)}",
        )
    row_shape = shape[1:]
    if any(d <= 0 for d in row_shape) or shape[0] < 0:
        raise BatchFileError(
            f"the .npy array has shape {list(shape)}: a row dimension of 0 holds no values",
            expected="rows of at least one value",
            received=list(shape),
        )
    row_bytes = dtype.itemsize * math.prod(row_shape)
    data_bytes = size - len(prefix) - len(header.getvalue())
    if shape[0] * row_bytes != data_bytes:
        raise BatchFileError(
            f"the .npy header declares {shape[0]} rows of {row_bytes} bytes; {data_bytes} bytes of data follow it",
            expected=shape[0] * row_bytes,
            received=data_bytes,
        )
    rows_per_read = max(1, NPY_READ_BYTES // row_bytes)
    for start in range(0, shape[0], rows_per_read):
        count = min(rows_per_read, shape[0] - start)
        block = reader.read(row_bytes * count)
        if len(block) != row_bytes * count:  # the object changed under the read: its size was checked
            raise BatchFileError(f"the .npy file ends early at row {start + len(block) // row_bytes}")
        array = np.frombuffer(block, dtype=dtype).reshape((count, *row_shape))
        for offset in range(count):
            yield Row(line=start + offset, instance=array[offset].tolist(), size=row_bytes)


class S3Writer:
    """Writes an object as it is produced (multipart above one part), so memory stays bounded."""

    def __init__(self, s3: Any, bucket: str, key: str, content_type: str) -> None:
        self.s3, self.bucket, self.key, self.content_type = s3, bucket, key, content_type
        self.buffer = io.BytesIO()
        self.parts: list[dict[str, Any]] = []
        self.upload_id: str | None = None
        self.bytes = 0

    def write_line(self, record: dict[str, Any]) -> None:
        """One record as a line. Its numbers are finite: a row whose outputs are not goes to the errors file
        (``batch.NONFINITE``) and an id that is not is refused when read (``_writable``), so orjson (~5x
        the json module's speed here) never meets the NaN it would write as null."""
        data = json_codec.dumps_bytes(record) + b"\n"
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
