"""`maas models list | describe | history` print tables a person reads, `--json` the JSON scripts read
(its fields unchanged), and a model name that does not exist is one line naming those that do (issue 20).
Through maas.cli.main against moto's S3, the registry holding a real published model."""

from __future__ import annotations

import contextlib
import json
import os

import pytest

from maas.cli import main
from tests_support import build_digits_onnx

BUCKET = os.environ["MODEL_BUCKET"]


@pytest.fixture
def cli(registry, digits_onnx, make_manifest, monkeypatch, capsys):
    """`maas models ...` on the moto registry, two versions of digits, production moved to the second."""
    import maas.stack

    monkeypatch.setattr(maas.stack, "s3_for", lambda template: contextlib.nullcontext({}))
    registry.publish("digits", digits_onnx, make_manifest())
    second = registry.publish("digits", build_digits_onnx(seed=1), make_manifest())
    registry.promote("digits", "production", second.version, actor="ana", reason="better one")

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["models", "--bucket", BUCKET, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_list_is_a_table_and_its_json_is_unchanged(cli, registry):
    code, out, _ = cli("list")
    versions = registry.numbered_versions("digits")
    assert code == 0
    assert out.split("\n")[0].split() == ["NAME", "VERSIONS", "LATEST", "ALIASES"]
    assert out.split("\n")[1].split() == ["digits", "2", "2", f"({versions[1]['version']})", "production=2"]
    code, out, _ = cli("list", "--json")
    assert code == 0
    assert json.loads(out) == [
        {"name": "digits", "aliases": {"production": versions[1]["version"]}, "versions": versions}
    ]


def test_describe_and_history_are_read_as_a_person_reads_them(cli, registry):
    code, out, _ = cli("describe", "digits")
    first, second = (v["version"] for v in registry.numbered_versions("digits"))
    assert code == 0
    assert f"version:     {second} (number 2)" in out
    assert "inputs:      image float32 [None, 8, 8, 1]" in out
    assert "limits:" in out and "fits" in out
    assert ["NUMBER", "VERSION", "ALIASES"] in [line.split() for line in out.splitlines()]
    assert ["1", first, "-"] in [line.split() for line in out.splitlines()]
    assert ["2", second, "production"] in [line.split() for line in out.splitlines()]
    assert json.loads(cli("describe", "digits", "--json")[1])["version"] == second

    code, out, _ = cli("history", "digits")
    lines = out.splitlines()
    assert lines[0].split() == ["WHEN", "WHO", "FROM", "TO", "CANARY", "REASON"]
    assert lines[-1].split()[1:] == ["ana", first, second, "-", "better", "one"]


def test_a_model_that_does_not_exist_is_one_line_naming_those_that_do(cli):
    code, out, err = cli("describe", "digts")
    assert (code, out) == (2, "")
    assert err.splitlines() == ["maas: no model named 'digts'; the registry has digits (maas models list)"]
    code, _, err = cli("describe", "digts", "--json")  # scripts get the API's error body, as before
    assert code == 2 and json.loads(err)["code"] == "model_not_found"


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "0  done" in out and "1  a job, a request or a batch file failed" in out and "2  usage" in out
