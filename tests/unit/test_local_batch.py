"""`maas local batch`: a file whose key could not be scored is refused before any upload."""

import json

import pytest

from maas import local_batch


@pytest.mark.parametrize(("model", "ref"), [("Digits", "production"), ("digits", "../models"), ("digits", "Prod")])
def test_a_model_or_ref_outside_the_layout_is_refused_before_the_stack_starts(
    tmp_path, monkeypatch, capsys, model, ref
):
    def no_stack(*args, **kwargs):
        raise AssertionError("the stack started for a file that cannot be scored")

    monkeypatch.setattr(local_batch, "load_template", no_stack)
    file = tmp_path / "rows.jsonl"
    file.write_text('{"instances": [[0]]}\n')
    assert local_batch.run(file, model, ref, tmp_path / "out", timeout_s=1) == 2
    error = json.loads(capsys.readouterr().err)
    assert error["code"] == "invalid_name" and error["details"]["received"] in (model, ref)
