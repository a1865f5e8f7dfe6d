"""Property-based fuzzing of the API from its own OpenAPI document, through the local stack.

schemathesis reads GET /openapi.json and sends what it generates to every route: the documented
examples, the boundary and negative cases of its coverage phase (missing, wrong-typed and
out-of-range parameters and bodies) and random positive and negative requests, with a fixed seed.
No response may be a 5xx, break the documented schema or content type, and the container that
answered the first request must answer the last (no crash, no restart).

`make test` runs a small run (MAAS_FUZZ_MAX_EXAMPLES=4, a few hundred requests); `make fuzz` the
long one (at least 1,000 requests, stateful phase included). Both print the request count.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from tests_support import http

pytestmark = pytest.mark.integration

MAX_EXAMPLES = int(os.environ.get("MAAS_FUZZ_MAX_EXAMPLES", "4"))
MIN_REQUESTS = int(os.environ.get("MAAS_FUZZ_MIN_REQUESTS", "250"))
SEED = int(os.environ.get("MAAS_FUZZ_SEED", "20261124"))
PHASES = os.environ.get("MAAS_FUZZ_PHASES", "examples,coverage,fuzzing")
CHECKS = ["not_a_server_error", "response_schema_conformance", "status_code_conformance", "content_type_conformance"]
HOOKS = Path(__file__).with_name("fuzz_hooks.py")
# Keep generating after a failure, so one finding does not hide the next. The coverage phase also
# sends methods no route declares; TRACE and QUERY are left out because the local API answers them
# 501 (see test_methods_no_route_declares_are_refused_like_an_unknown_route).
CONFIG = """
continue-on-failure = true

[phases.coverage]
unexpected-methods = ["get", "put", "post", "delete", "options", "patch"]
"""
UNDOCUMENTED_STATUS = "ST103"


@dataclass
class FuzzRun:
    report: dict[str, Any]
    entries: list[dict[str, Any]]  # every request and response (HAR)
    output: str
    document: dict[str, Any]

    @property
    def failures(self) -> dict[str, dict[str, Any]]:
        return {f["code"]: f for f in self.report["failures"]}

    def operation(self, entry: dict[str, Any]) -> tuple[str, str] | None:
        """(METHOD, path template) of the documented operation a request was sent to."""
        method = entry["request"]["method"]
        path = "/" + entry["request"]["url"].split("/", 3)[3].split("?")[0]
        for template, item in self.document["paths"].items():
            pattern = "^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)) + "$"
            if method.lower() in item and re.match(pattern, path):
                return method, template
        return None

    def undocumented(self) -> dict[tuple[str, str], set[int]]:
        """Statuses each operation answered that its OpenAPI entry does not declare."""
        found: dict[tuple[str, str], set[int]] = {}
        for entry in self.entries:
            operation = self.operation(entry)
            if operation is None:
                continue
            declared = self.document["paths"][operation[1]][operation[0].lower()]["responses"]
            status = entry["response"]["status"]
            if str(status) not in declared and f"{str(status)[0]}XX" not in declared and "default" not in declared:
                found.setdefault(operation, set()).add(status)
        return found


@pytest.fixture(scope="module")
def fuzz_run(stack, tmp_path_factory, request) -> FuzzRun:
    out = tmp_path_factory.mktemp("fuzz")
    (out / "schemathesis.toml").write_text(CONFIG)
    url = stack["url"]
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(out / "schemathesis.toml"),
        "run",
        f"{url}/openapi.json",
        "--url",
        url,
        "--checks",
        ",".join(CHECKS),
        "--mode",
        "all",
        "--phases",
        PHASES,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--generation-database",
        "none",  # no .hypothesis folder, and the same cases on every run
        "--report",
        "json,har",
        "--report-json-path",
        str(out / "report.json"),
        "--report-har-path",
        str(out / "requests.har"),
        "--no-color",
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": str(HOOKS),
        "MAAS_FUZZ_MODELS": "digits,blend",
        "MAAS_FUZZ_VERSIONS": stack["version"],
    }
    result = subprocess.run(command, cwd=out, env=env, capture_output=True, text=True, timeout=3000)
    assert (out / "report.json").exists(), result.stdout[-5000:] + result.stderr[-5000:]
    run = FuzzRun(
        report=json.loads((out / "report.json").read_text()),
        entries=json.loads((out / "requests.har").read_text())["log"]["entries"],
        output=result.stdout + result.stderr,
        document=http("GET", f"{url}/openapi.json")[1],
    )
    statuses = Counter(e["response"]["status"] for e in run.entries)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # shown without -s, in make test and make fuzz alike
            reporter.write_line(
                f"\nfuzz: {len(run.entries)} requests to {run.report['operations']['tested']} operations "
                f"(seed {SEED}, {MAX_EXAMPLES} examples per operation, phases {PHASES}); "
                f"statuses {dict(sorted(statuses.items()))}; "
                f"failures {({code: f['count'] for code, f in run.failures.items()}) or 0}"
            )
    return run


def test_fuzzing_finds_no_server_error_and_no_response_off_its_schema(fuzz_run):
    assert not fuzz_run.report["errors"], fuzz_run.output[-8000:]
    findings = {code: f for code, f in fuzz_run.failures.items() if code != UNDOCUMENTED_STATUS}
    assert not findings, fuzz_run.output[-8000:]
    server_errors = [
        (e["request"]["method"], e["request"]["url"]) for e in fuzz_run.entries if e["response"]["status"] >= 500
    ]
    assert not server_errors
    assert len(fuzz_run.entries) >= MIN_REQUESTS
    assert fuzz_run.report["operations"]["tested"] == fuzz_run.report["operations"]["total"] >= 17
    # The hooks steer names to published models: generated tensors reached the models, not only 404s.
    answered = Counter(fuzz_run.operation(e) for e in fuzz_run.entries if e["response"]["status"] == 200)
    assert answered[("POST", "/models/{name}/predict")] and answered[("POST", "/v2/models/{name}/infer")], answered


def test_every_status_the_api_answers_is_documented(fuzz_run):
    missing = fuzz_run.undocumented()
    assert not missing, "\n".join(f"{m} {p}: {sorted(s)}" for (m, p), s in sorted(missing.items()))
    assert UNDOCUMENTED_STATUS not in fuzz_run.failures


def test_the_warm_container_survived_the_fuzzing(stack, fuzz_run):
    status, health = http("GET", f"{stack['url']}/health")
    assert status == 200 and health["container"] == stack["container"]


@pytest.mark.parametrize("method", ["TRACE", "QUERY"])
def test_methods_no_route_declares_are_a_json_405(stack, method):
    """A method a path does not take reaches ApiFunction through the path's ANY: 405 with Allow."""
    status, body = http(method, f"{stack['url']}/health")
    assert status == 405 and body["code"] == "method_not_allowed" and body["details"]["allowed"] == ["GET"]


@pytest.mark.parametrize("path", ["/no/such/route", "/", "/v2/models/digits/infer/more"])
def test_an_unknown_route_is_a_json_404(stack, path):
    status, body = http("GET", f"{stack['url']}{path}")
    assert status == 404 and body["code"] == "route_not_found"


def _declared_values(fuzz_run: FuzzRun, entry: dict[str, Any]) -> list[tuple[str, str, str]] | None:
    """(parameter, value sent, declared pattern) for the path and query parameters of a request that
    declare a pattern; None for a request to no documented operation."""
    operation = fuzz_run.operation(entry)
    if operation is None:
        return None
    method, template = operation
    declared = fuzz_run.document["paths"][template][method.lower()].get("parameters", [])
    url = urlsplit(entry["request"]["url"])
    sent = {("query", k): v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
    for name, value in zip(template.strip("/").split("/"), url.path.strip("/").split("/"), strict=False):
        if name.startswith("{"):
            sent[("path", name.strip("{}"))] = unquote(value)
    values = [
        (p["name"], sent[(p["in"], p["name"])], _pattern_of(p))
        for p in declared
        if _pattern_of(p) and (p["in"], p["name"]) in sent
    ]
    # A job body names its alias or version with the same patterns as the query parameters.
    try:
        body = json.loads(entry["request"].get("postData", {}).get("text") or "null")
    except ValueError:
        body = None
    query_patterns = {name: pattern for (where, name), pattern in _patterns(fuzz_run).items() if where == "query"}
    for field in ("alias", "version"):
        if isinstance(body, dict) and body.get(field) is not None:
            value = body[field]
            values.append((field, value if isinstance(value, str) else json.dumps(value), query_patterns[field]))
    return values


def _patterns(fuzz_run: FuzzRun) -> dict[tuple[str, str], str]:
    """(in, name) -> pattern, for every parameter the document declares with a pattern."""
    return {
        (p["in"], p["name"]): pattern
        for item in fuzz_run.document["paths"].values()
        for op in item.values()
        if isinstance(op, dict)
        for p in op.get("parameters", [])
        if (pattern := _pattern_of(p))
    }


def _pattern_of(parameter: dict[str, Any]) -> str | None:
    """The declared pattern of a parameter, an optional one's (``anyOf`` with null) included."""
    schema = parameter.get("schema", {})
    for option in [schema, *schema.get("anyOf", [])]:
        if "pattern" in option:
            return str(option["pattern"])
    return None


def test_a_name_that_matches_its_declared_pattern_is_never_a_400_invalid_name(fuzz_run):
    """The document declares the name, version, alias and job-id patterns, so what schemathesis
    generates from them is accepted: every 400 invalid_name it met broke a declared pattern."""
    checked, wrongly_refused = 0, []
    for entry in fuzz_run.entries:
        text = entry["response"].get("content", {}).get("text") or ""
        if entry["response"]["status"] != 400 or '"invalid_name"' not in text:
            continue
        values = _declared_values(fuzz_run, entry)
        if not values:
            continue
        checked += 1
        # ECMA's "$" is the end of the string; Python's also matches before a trailing newline.
        if all(re.search(pattern.removesuffix("$") + r"\Z", value) for _, value, pattern in values):
            wrongly_refused.append((entry["request"]["method"], entry["request"]["url"], text[:200]))
    assert not wrongly_refused, wrongly_refused[:5]
    assert checked, "the coverage phase sends malformed names: some must have been refused"
    assert {"name", "version", "alias", "job_id"} <= {name for _, name in _patterns(fuzz_run)}
