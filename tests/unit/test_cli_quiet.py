"""The CLI is quiet by default (issue 20): the libraries' lines a training job writes (TensorFlow's absl
INFO lines, onnxruntime's C++ warnings, the quantiser's advice) never reach the user unless --verbose,
the job's own lines and every error do, and its epochs are thinned to a few lines in a pipe."""

from __future__ import annotations

import io
import logging
import subprocess
import sys

import pytest

from maas import console

# Lines a `maas train local --family tabular` job wrote before (TensorFlow 2.21, onnxruntime 1.26).
LIBRARY_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796086464.624581    9715 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results due to floating-point round-off errors.",
    "\x1b[0;93m2026-12-01 00:54:27.109594763 [W:onnxruntime:, graph.cc:5809 CleanUnusedInitializersAndNodeArgs] "
    "Removing initializer 'tabular_mlp_1/standardise_1/Sqrt/x:0'. It is not used by any node and should be "
    "removed from the model.\x1b[m",
    "WARNING:root:Please consider to run pre-processing before quantization. Refer to example: https://github.com/"
    "microsoft/onnxruntime-inference-examples/blob/main/quantization/image_classification/cpu/ReadMe.md ",
    "WARNING:root:Please consider pre-processing before quantization. See https://github.com/microsoft/"
    "onnxruntime-inference-examples/blob/main/quantization/image_classification/cpu/ReadMe.md ",
]
# What must pass: the job's own lines, errors (a C++ E line, a traceback), a warning nobody filtered.
KEPT_LINES = [
    "epoch=3 of=3 accuracy=0.9648 loss=0.1064 val_accuracy=0.9912 val_loss=0.0617",
    "candidate fp32: 19,179 bytes (16,368 gzipped), accuracy 0.9912, ACCEPTED",
    "E0000 00:00:1796086464.624581    9715 cuda_executor.cc:1] failed call to cuInit",
    "\x1b[1;31m2026-12-01 00:54:27.1 [E:onnxruntime:, inference_session.cc:1] Load model failed\x1b[m",
    "Traceback (most recent call last):",
    "WARNING:root:the disk is nearly full",
]


@pytest.fixture
def quiet(monkeypatch):
    monkeypatch.setattr(console, "_verbose", False)


@pytest.mark.parametrize("line", LIBRARY_LINES)
def test_library_lines_are_noise_unless_verbose(line, quiet, monkeypatch):
    assert console.is_noise(line)
    monkeypatch.setattr(console, "_verbose", True)
    assert not console.is_noise(line)


@pytest.mark.parametrize("line", KEPT_LINES)
def test_the_jobs_lines_and_errors_pass(line, quiet):
    assert not console.is_noise(line)


def test_a_childs_stderr_passes_through_without_the_noise(quiet):
    lines = [*LIBRARY_LINES, *KEPT_LINES]
    script = "import sys\nfor line in sys.argv[1:]:\n    print(line, file=sys.stderr)\n"
    child = subprocess.Popen([sys.executable, "-c", script, *lines], stderr=subprocess.PIPE)
    out = io.StringIO()
    with console.filtered(child.stderr, out):
        child.wait()
    assert out.getvalue().splitlines() == KEPT_LINES


def test_a_jobs_epochs_are_five_lines_in_a_pipe_and_all_with_verbose(quiet, monkeypatch):
    job = b"".join(b"epoch=%d of=20 accuracy=0.9 loss=0.1\n" % n for n in range(1, 21)) + b"export: done\n"
    out = io.StringIO()  # not a terminal: plain lines, no bar
    console.condense_epochs(io.BytesIO(job), out)
    shown = [line.split()[0] for line in out.getvalue().splitlines()]
    assert shown == ["epoch=1", "epoch=5", "epoch=10", "epoch=15", "epoch=20", "export:"]
    monkeypatch.setattr(console, "_verbose", True)
    out = io.StringIO()
    console.condense_epochs(io.BytesIO(job), out)
    assert len(out.getvalue().splitlines()) == 21


def test_the_quantisers_advice_on_the_root_logger_is_silenced_in_process(quiet, monkeypatch):
    root = logging.getLogger()
    monkeypatch.setattr(root, "filters", list(root.filters))  # configure() adds its filter: undone after
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    console.configure(verbose=False)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    root.addHandler(handler)
    try:
        logging.warning("Please consider to run pre-processing before quantization.")
        logging.warning("the disk is nearly full")
    finally:
        root.removeHandler(handler)
    assert out.getvalue().splitlines() == ["the disk is nearly full"]
