"""Every S3 key of the model bucket, built and parsed here only, and what S3's error codes mean.

This module is the one place the bucket's layout lives in code (ARCHITECTURE.md, "Registry layout"
and "Batch layout"; the training prefixes are those of ``training/submit.py``'s docstring)::

    models/<name>/<version>/model.onnx
    models/<name>/<version>/model.onnx.data      a split model's weights (ONNX external data), optional
    models/<name>/<version>/manifest.json
    models/<name>/aliases/<alias>.json
    models/<name>/history/<alias>/<entry>.json
    models/<name>/numbers/<n>.json                 {"version": V}: the version's number, written once
    batch/in/<model>/<alias or version>/<path>/<file>
    batch/in/<model>/<alias or version>/jobs/<job id>/input.<ext>       a job's upload
    batch/out/<model>/<alias or version>/<path>/<file>/<etag>/{results.jsonl, errors.jsonl, summary.json}
                                                             /parts/NNNNN.{results.jsonl, errors.jsonl, done.json}
    batch/out/_rejected/<sha256 of key and etag>/summary.json
    batch/jobs/<job id>.json
    training-data/<job>/<channel>/
    training-jobs/<job>/{source/sourcedir.tar.gz, output/, checkpoints/}

A key is only ever built from names that passed their check (full matches: no ``/``, no ``..``, no
trailing newline), so nothing a caller sends can reach outside its prefix. The template's IAM
policies grant these same prefixes; a prefix changed here is changed there too.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum

from maas_core.shared.errors import BatchFileError, InvalidName, MaasError

# Anchored with \Z and used with fullmatch: "$" also matches before a trailing newline, so
# "digits\n" passed. \Z keeps a caller's .match (training/submit.py) exact as well.
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}\Z")
VERSION_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}\Z")
ALIAS_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}\Z")
# A version's number (ARCHITECTURE.md, "Registry layout": version numbers): 1, 2, 3 ... as TF Serving and
# KServe clients pin them; one spelling per number (no sign, no leading zero), at most 9 digits.
NUMBER_RE = re.compile(r"^[1-9][0-9]{0,8}\Z")
VERSION_REF_RE = re.compile(r"^(?:[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}|[1-9][0-9]{0,8})\Z")

MODELS_PREFIX = "models/"
BATCH_PREFIX = "batch/"
IN_PREFIX = f"{BATCH_PREFIX}in/"
OUT_PREFIX = f"{BATCH_PREFIX}out/"
JOBS_PREFIX = f"{BATCH_PREFIX}jobs/"
# Where a file whose key names no valid model or alias gets its failed summary: no place derived from
# such a key can be trusted, so it goes under a hash of the key ("_" cannot start a model name).
REJECTED_PREFIX = f"{OUT_PREFIX}_rejected/"
TRAINING_DATA_PREFIX = "training-data/"
TRAINING_JOBS_PREFIX = "training-jobs/"

MODEL_FILE = "model.onnx"
# A split model's weights (ONNX external data). The graph names this file as every initialiser's
# ``location``, and onnxruntime resolves it beside the graph: the one name allowed.
DATA_FILE = "model.onnx.data"
MANIFEST_FILE = "manifest.json"
RESULTS_FILE = "results.jsonl"
ERRORS_FILE = "errors.jsonl"
SUMMARY_FILE = "summary.json"
PART_DONE_FILE = "done.json"


# -- names: the segments a key is built from ------------------------------------------------------
def _checked(value: str, pattern: re.Pattern[str], message: str, expected: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidName(message, expected=expected, received=value)
    return value


def check_name(name: str) -> str:
    return _checked(name, NAME_RE, "model name must match [a-z0-9][a-z0-9-]{0,62}", "[a-z0-9][a-z0-9-]{0,62}")


def check_version(version: str) -> str:
    return _checked(version, VERSION_RE, "version must look like 20260101T120000Z-0123abcd", "YYYYMMDDTHHMMSSZ-<8 hex>")


def check_alias(alias: str) -> str:
    return _checked(alias, ALIAS_RE, "alias must match [a-z][a-z0-9-]{0,31}", "[a-z][a-z0-9-]{0,31}")


def is_version(ref: str) -> bool:
    return bool(VERSION_RE.fullmatch(ref))


def is_number(ref: str) -> bool:
    """Whether ``ref`` names a version by its number (``3``), which the registry turns into the version."""
    return isinstance(ref, str) and bool(NUMBER_RE.fullmatch(ref))


def check_version_ref(ref: str) -> str:
    """An exact version or a version's number, as a ``/versions/<v>`` path or ``?version=`` gives it."""
    return _checked(
        ref,
        VERSION_REF_RE,
        "version must look like 20260101T120000Z-0123abcd or be a version number 1, 2, 3 ...",
        "YYYYMMDDTHHMMSSZ-<8 hex> or [1-9][0-9]{0,8}",
    )


def check_ref(ref: str) -> str:
    """An alias, an exact version or a version's number, as a batch key names it."""
    return check_version_ref(ref) if is_version(ref) or is_number(ref) else check_alias(ref)


# -- the registry ---------------------------------------------------------------------------------
def model_prefix(name: str) -> str:
    """Everything of one model: its versions, its aliases and their history."""
    return f"{MODELS_PREFIX}{check_name(name)}/"


def version_prefix(name: str, version: str) -> str:
    """One version's objects (two; three for a split model), each written once with If-None-Match: *
    (a version is immutable)."""
    return f"{model_prefix(name)}{check_version(version)}/"


def model_key(name: str, version: str) -> str:
    return version_prefix(name, version) + MODEL_FILE


def data_key(name: str, version: str) -> str:
    """A split model's weights: written before model.onnx (If-None-Match: *), present only when the
    manifest's ``artifact.external_data`` says so."""
    return version_prefix(name, version) + DATA_FILE


def manifest_key(name: str, version: str) -> str:
    """Written last: a version exists once its manifest does."""
    return version_prefix(name, version) + MANIFEST_FILE


def version_of(name: str, key: str) -> str | None:
    """The version whose manifest ``key`` is (a version exists once its manifest does), else None."""
    rest = key.removeprefix(model_prefix(name))
    if rest == key or not rest.endswith(f"/{MANIFEST_FILE}"):
        return None
    version = rest.removesuffix(f"/{MANIFEST_FILE}")
    return version if VERSION_RE.fullmatch(version) else None


def aliases_prefix(name: str) -> str:
    return f"{model_prefix(name)}aliases/"


def alias_key(name: str, alias: str) -> str:
    """``{"version": V, "canary"?: {"version": W, "weight": 0..1}}``, changed by compare-and-swap only."""
    return f"{aliases_prefix(name)}{check_alias(alias)}.json"


def _json_named(prefix: str, key: str, pattern: re.Pattern[str]) -> str | None:
    """The ``<x>`` of ``<prefix><x>.json`` when ``x`` fully matches ``pattern``, else None."""
    rest = key.removeprefix(prefix)
    if rest == key or not rest.endswith(".json"):
        return None
    named = rest.removesuffix(".json")
    return named if pattern.fullmatch(named) else None


def alias_of(name: str, key: str) -> str | None:
    """The alias whose object ``key`` is, else None."""
    return _json_named(aliases_prefix(name), key, ALIAS_RE)


def history_prefix(name: str, alias: str) -> str:
    """One object per change of the alias; entries named by time list oldest first."""
    return f"{model_prefix(name)}history/{check_alias(alias)}/"


def history_key(name: str, alias: str, entry: str) -> str:
    return f"{history_prefix(name, alias)}{entry}"


def numbers_prefix(name: str) -> str:
    """One object per version number taken: numbers go 1, 2, 3 ... without a gap, and are never reused."""
    return f"{model_prefix(name)}numbers/"


def number_key(name: str, number: int) -> str:
    """``{"version": V}``: written once with If-None-Match: * (the compare-and-swap that takes the number),
    never overwritten or deleted, so a number names one version for ever, even once it is deleted."""
    if type(number) is not int or not NUMBER_RE.fullmatch(str(number)):
        raise InvalidName("a version number is a positive integer", expected="1, 2, 3 ...", received=str(number))
    return f"{numbers_prefix(name)}{number}.json"


def number_of(name: str, key: str) -> int | None:
    """The number whose object ``key`` is, else None."""
    number = _json_named(numbers_prefix(name), key, NUMBER_RE)
    return int(number) if number else None


# -- batch ----------------------------------------------------------------------------------------
@dataclass
class BatchKey:
    """An input file's key, parsed: what scores it, and where its outputs go."""

    model: str
    ref: str
    path: str
    etag: str

    @property
    def out_prefix(self) -> str:
        return f"{OUT_PREFIX}{self.model}/{self.ref}/{self.path}/{self.etag}/"

    @property
    def summary_key(self) -> str:
        return self.out_prefix + SUMMARY_FILE

    @property
    def parts_prefix(self) -> str:
        return f"{self.out_prefix}parts/"

    def part_prefix(self, part: int) -> str:
        """What a part's files start with: ``parts/00001.`` then results.jsonl, errors.jsonl, done.json."""
        return f"{self.parts_prefix}{part:05d}."


def input_key(model: str, ref: str, path: str) -> str:
    """Where a file to score goes: ``path`` may hold folders, never an empty, ``.`` or ``..`` segment."""
    return f"{IN_PREFIX}{check_name(model)}/{check_ref(ref)}/{path}"


def job_input_key(model: str, ref: str, job_id: str, extension: str) -> str:
    return input_key(model, ref, f"jobs/{job_id}/input.{extension}")


def job_key(job_id: str) -> str:
    return f"{JOBS_PREFIX}{job_id}.json"


def parse_key(key: str, etag: str) -> BatchKey:
    """An input key and its ETag parsed back, or a BatchFileError saying what a key must look like."""
    if not key.startswith(IN_PREFIX):
        raise BatchFileError(
            f"batch files go under {IN_PREFIX}", expected=f"{IN_PREFIX}<model>/<alias>/<file>", received=key
        )
    parts = key[len(IN_PREFIX) :].split("/")
    if len(parts) < 3 or not all(parts) or any(p in (".", "..") for p in parts):
        raise BatchFileError(
            "batch file keys name a model and an alias or version",
            expected=f"{IN_PREFIX}<model>/<alias or version>/<file>",
            received=key,
        )
    model, ref = check_name(parts[0]), check_ref(parts[1])
    clean_etag = etag.strip('"')
    if not clean_etag.replace("-", "").isalnum():
        raise BatchFileError("unexpected ETag", received=etag)
    return BatchKey(model=model, ref=ref, path="/".join(parts[2:]), etag=clean_etag)


def failure_prefix(key: str, etag: str) -> str:
    """Where the failed summary of an input goes: beside its results, or, for a key that names no
    valid model or alias, under ``REJECTED_PREFIX`` and a hash of the key."""
    try:
        return parse_key(key, etag).out_prefix
    except MaasError:
        digest = hashlib.sha256(f"{key}\0{etag.strip(chr(34))}".encode()).hexdigest()[:32]
        return f"{REJECTED_PREFIX}{digest}/"


# -- training -------------------------------------------------------------------------------------
def training_data_prefix(job: str, channel: str) -> str:
    return f"{TRAINING_DATA_PREFIX}{job}/{channel}/"


def training_source_key(job: str) -> str:
    return f"{TRAINING_JOBS_PREFIX}{job}/source/sourcedir.tar.gz"


def training_checkpoints_prefix(job: str) -> str:
    return f"{TRAINING_JOBS_PREFIX}{job}/checkpoints/"


# -- what S3 answered -----------------------------------------------------------------------------
class S3Outcome(StrEnum):
    MISSING = "missing"
    PRECONDITION_FAILED = "precondition_failed"
    NOT_MODIFIED = "not_modified"
    UNAVAILABLE = "unavailable"


# GET answers NoSuchKey, HEAD a bare 404 (or NotFound). NoSuchBucket is not "missing": a bucket that is
# not there is a broken deployment, a dependency failure (503), never a 404 that blames the request.
# A conditional write that lost answers 412, or 409 ConditionalRequestConflict while another write
# of the same key is in flight: both mean "someone else changed it".
_OUTCOMES = {
    "NoSuchKey": S3Outcome.MISSING,
    "404": S3Outcome.MISSING,
    "NotFound": S3Outcome.MISSING,
    "PreconditionFailed": S3Outcome.PRECONDITION_FAILED,
    "412": S3Outcome.PRECONDITION_FAILED,
    "ConditionalRequestConflict": S3Outcome.PRECONDITION_FAILED,
    "409": S3Outcome.PRECONDITION_FAILED,
    "NotModified": S3Outcome.NOT_MODIFIED,
    "304": S3Outcome.NOT_MODIFIED,
}


def error_code(exc: BaseException) -> str:
    """S3's error code of a botocore ClientError; "" for anything else (a connection that failed)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def s3_outcome(exc: BaseException) -> S3Outcome:
    """What a failed S3 call means to the project: any error not named above is S3 being unavailable."""
    return _OUTCOMES.get(error_code(exc), S3Outcome.UNAVAILABLE)
