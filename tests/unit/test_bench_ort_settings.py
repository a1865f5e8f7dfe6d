"""bench's "onnxruntime settings" section: the served settings against each one changed alone (issue 19)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bench import child, report
from bench.stats import Stat
from tests.tests_support import digits_data

SERVED = {
    "intra_op_num_threads": 1,
    "inter_op_num_threads": 1,
    "execution_mode": "ORT_SEQUENTIAL",
    "graph_optimization_level": "ORT_ENABLE_ALL",
    "allow_spinning": "default (on)",
}


def test_the_child_times_the_served_session_and_each_setting_changed_alone(tmp_path: Path, digits_onnx: bytes) -> None:
    """Real sessions of a real model: the served row is build_session's own session, each other row
    differs from it in its one setting, and each has its per-run ratio to the row it is compared with."""
    model = tmp_path / "model.onnx"
    model.write_bytes(digits_onnx)
    files = tmp_path / "files.json"
    files.write_text(json.dumps({"served": str(model), "fp32": str(model)}))
    rows = tmp_path / "rows.npy"
    np.save(rows, digits_data()[0][:32])
    out = tmp_path / "out.json"

    assert child.main(["ort-settings", str(files), str(rows), "20", "3", str(out)]) == 0

    result = json.loads(out.read_text())
    assert result["served_options"] == {"served": SERVED, "fp32": SERVED}
    assert set(result["timed"]) == {"served x1", "served x32", "fp32 x1", "fp32 x32"}
    assert result["settings"]["no-spin-2"]["versus"] == "served-2"  # spinning off is held against 2 threads on
    for row in result["timed"].values():
        assert set(row) == set(child.ORT_SETTINGS)
        assert "ratio" not in row["served-1"]
        for key, timed in row.items():
            assert Stat.from_dict(timed["p50_ms"]).n == 3
            if key != "served-1":
                versus = row[result["settings"][key]["versus"]]
                # Run i over run i of the other (the same turn), before either was rounded for results.json: the
                # runs are kept to 4 decimals (half of 1e-4 either way) and the ratio to 3, so the ratio lies
                # within what the rounded runs allow. A run that caught a pause makes a large ratio, where an
                # absolute margin alone would not hold.
                half = 0.5e-4
                for ratio, a, b in zip(
                    timed["ratio"]["runs"], timed["p50_ms"]["runs"], versus["p50_ms"]["runs"], strict=True
                ):
                    assert (a - half) / (b + half) - 0.0005 <= ratio <= (a + half) / (b - half) + 0.0005, (a, b, ratio)


def test_a_changed_session_keeps_every_served_setting_but_its_own(tmp_path: Path, digits_onnx: bytes) -> None:
    from maas_core.shared.model_cache import build_session

    model = tmp_path / "model.onnx"
    model.write_bytes(digits_onnx)
    served = build_session(str(model), threads=1)
    assert child._options_of(served) == SERVED
    basic = child._options_of(child._changed(str(model), served, {"level": "ORT_ENABLE_BASIC"}))
    assert basic == {**SERVED, "graph_optimization_level": "ORT_ENABLE_BASIC"}
    no_spin = child._options_of(child._changed(str(model), served, {"threads": 2, "spinning": False}))
    assert no_spin == {**SERVED, "intra_op_num_threads": 2, "allow_spinning": "0"}
    parallel = child._options_of(child._changed(str(model), served, {"mode": "ORT_PARALLEL", "inter_op": 2}))
    assert parallel == {**SERVED, "execution_mode": "ORT_PARALLEL", "inter_op_num_threads": 2}
    # With the served single inter-op thread onnxruntime runs PARALLEL as SEQUENTIAL: the child refuses
    # to time such a row under PARALLEL's name.
    alone = child._options_of(child._changed(str(model), served, {"mode": "ORT_PARALLEL"}))
    assert alone == SERVED


def _stat(value: float) -> dict[str, Any]:
    return Stat.of([value * 0.98, value, value * 1.03]).to_dict()


def _results(ratios: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """A run's section: the served p50 0.02 ms at batch 1 and 0.30 at 32, each other setting its ratios."""
    settings = {key: {"label": label, "versus": versus} for key, (label, _change, versus) in child.ORT_SETTINGS.items()}
    timed: dict[str, Any] = {}
    for model in ("served", "fp32"):
        for n, base in ((1, 0.02), (32, 0.30)):
            row = timed[f"{model} x{n}"] = {"served-1": {"p50_ms": _stat(base), "calls": 300}}
            for key in settings:
                if key != "served-1":
                    ratio = ratios[key][0 if n == 1 else 1]
                    row[key] = {"p50_ms": _stat(base * ratio), "ratio": _stat(ratio), "calls": 300}
    return {
        "machine": {"cores": 2},
        "ort_settings": {
            "models": {"served": "the served candidate (int8-static)", "fp32": "fp32"},
            "served_options": {"served": SERVED, "fp32": SERVED},
            "settings": settings,
            "timed": timed,
        },
    }


MEASURED = {
    "extended": (1.2, 1.9),
    "basic": (10.0, 3.7),
    "parallel": (1.01, 1.0),
    "served-2": (1.5, 0.66),
    "no-spin-2": (1.6, 1.02),
}


def test_the_section_renders_a_table_and_what_serving_uses_with_its_figures() -> None:
    text = report._ort_settings_section(_results(MEASURED))
    assert (
        "| setting | model | p50, batch 1 (ms) | ÷ compared with, batch 1 | p50, batch 32 (ms) | "
        "÷ compared with, batch 32 | compared with |"
    ) in text
    assert (
        "| served, 1 thread (up to 1,769 MB) | the served candidate (int8-static) | 0.020 (0.020-0.021) | - |" in text
    )
    assert (
        "| graph optimisation BASIC, 1 thread | fp32 | 0.200 (0.196-0.206) | 10.00 (9.80-10.30) | "
        "1.110 (1.088-1.143) | 3.70 (3.63-3.81) | served, 1 thread (up to 1,769 MB) |"
    ) in text
    lines = text.splitlines()
    [no_spin] = [line for line in lines if line.startswith("| 2 threads, spinning off | fp32 |")]
    assert no_spin.endswith(
        "| 1.60 (1.57-1.65) | 0.306 (0.300-0.315) | 1.02 (1.00-1.05) | served, 2 threads (1,770 to 3,538 MB) |"
    )
    assert len([line for line in lines if line.startswith("| served, 2 threads (1,770 to 3,538 MB) |")]) == 2
    # One sentence per setting: what serving uses (read from the sessions), with the run's figures.
    assert (
        "**Graph optimisation: ORT_ENABLE_ALL** (every fusion, and the CPU's own weight layouts), at every "
        "MemorySize and batch size: at batch 1 and 32, the served candidate's p50 under EXTENDED is 1.20x and "
        "1.90x (fp32: 1.20x and 1.90x) its p50 under ALL, under BASIC 10.00x and 3.70x (fp32: 10.00x and 3.70x)."
    ) in text
    # Threads are the one setting that follows MemorySize; a 2-thread figure is a >= 1,770 MB function's.
    assert "the one setting that changes with MemorySize" in text
    assert "so 1 thread up to 1,769 MB and 2 from 1,770 MB" in text and "(0.58 of one at 1,024 MB)" in text
    assert "p50 on 2 threads is 1.50x and 0.66x (fp32: 1.50x and 0.66x) its p50 on 1" in text
    assert "what a function of 1,770 MB or more gets from its second vCPU" in text
    assert "one session (one copy of the model in memory) serves every batch size" in text
    assert "**Spinning: default (on)**" in text and "spinning off is 1.60x and 1.02x" in text
    assert "**Execution mode: ORT_SEQUENTIAL**, 1 inter-op thread" in text and "PARALLEL is 1.01x and 1.00x" in text
    assert "This machine has 2 cores" in text
    assert "look at serving's choice again" not in text  # nothing serving passed over was faster


def test_a_setting_serving_passes_over_that_runs_faster_is_called_out() -> None:
    """Beyond the candidates' near-equal margin (10%) only: 0.95x is noise, 0.80x is a finding."""
    text = report._ort_settings_section(_results({**MEASURED, "extended": (0.95, 0.8), "no-spin-2": (0.95, 0.95)}))
    assert (
        "**This run finds graph optimisation EXTENDED, 1 thread faster (the served candidate (int8-static) at "
        "batch 32: 0.80x; fp32 at batch 32: 0.80x): look at serving's choice again.**"
    ) in text
    assert text.count("look at serving's choice again") == 1
    # Two threads beating one is what a bigger function gets, not a setting serving passed over.
    assert "finds served, 2 threads" not in text


def test_a_run_without_the_section_says_so() -> None:
    assert report._ort_settings_section({}) == "Not measured in this results.json.\n"
    failed = {"ort_settings": {"error": "RuntimeError: bench.child ort-settings exited 1"}}
    assert report._ort_settings_section(failed) == "Not measured: RuntimeError: bench.child ort-settings exited 1\n"
    assert "## onnxruntime settings\n\nNot measured in this results.json.\n" in report.markdown({})


def test_make_bench_times_the_published_file_and_fp32_on_the_functions_runtime(
    tmp_path: Path, digits_onnx: bytes
) -> None:
    """bench.run's part: the job's model.onnx (what `maas train` publishes) and its fp32 file, through the
    child on ApiFunction's environment; a second round pools its runs (ratios too) with the first's."""
    from bench import models, run
    from bench.common import ROOT, venv_runtime
    from maas.stack import load_template
    from maas_core.shared.manifest import Draft
    from tests.tests_support import build_digits_onnx, digits_manifest

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.onnx").write_bytes(digits_onnx)
    (model_dir / "model.fp32.onnx").write_bytes(build_digits_onnx(seed=1))
    candidates = [{"method": "fp32", "file": "model.fp32.onnx"}, {"method": "int8-static", "file": "model.onnx"}]
    draft = Draft.from_json({**digits_manifest(), "compression": {"method": "int8-static", "candidates": candidates}})
    job = models.Job(model_dir, draft, None)
    args = run.parse_args(["--quick", "--calls", "20", "--repeats", "1"])
    api_spec = load_template(str(ROOT / "template.yaml")).function("ApiFunction")

    def time_files(what: str, files: dict[str, str]) -> dict[str, Any]:
        return run._time_files(what, files, args, venv_runtime(), api_spec, {}, tmp_path)

    sections = run.Sections({})
    for _ in range(2):
        sections.run("ort_settings", "onnxruntime settings", lambda: run._ort_settings(job, time_files))

    assert json.loads((tmp_path / "ort-settings-files.json").read_text()) == {
        "served": str(model_dir / "model.onnx"),
        "fp32": str(model_dir / "model.fp32.onnx"),
    }
    result = sections.results["ort_settings"]
    assert sections.failed == []
    assert result["models"] == {"served": "the served candidate (int8-static)", "fp32": "fp32"}
    assert set(result["timed"]) == {"served x1", "served x32", "fp32 x1", "fp32 x32"}
    basic = result["timed"]["fp32 x32"]["basic"]
    assert Stat.from_dict(basic["p50_ms"]).n == Stat.from_dict(basic["ratio"]).n == 2 * 3  # 2 rounds of 3 runs
    assert "| graph optimisation BASIC, 1 thread | fp32 |" in report.markdown({"ort_settings": result})
