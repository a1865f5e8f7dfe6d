"""PRELOAD_MODELS: the production versions an environment loads during INIT (shared.preload)."""

import logging
import platform
import subprocess
import sys
import time

import pytest

from maas_core.shared.model_cache import ModelCache
from maas_core.shared.preload import Preload, wanted
from tests_support import digits_manifest


@pytest.fixture
def models(registry):
    loads = []
    cache = ModelCache(registry.bucket, registry=registry, on_load=loads.append)
    cache.loads = loads  # type: ignore[attr-defined]
    return cache


def test_the_setting_names_models_or_every_model():
    assert wanted(" digits, reviews ,") == ["digits", "reviews"]
    assert wanted("*") == ["*"] and wanted("") == []


def test_preloaded_production_version_serves_the_first_request_without_a_second_load(models, published):
    Preload(models, "digits").start().wait()
    assert [(m["model"], m["version"]) for m in models.loaded()] == [("digits", published.version)]
    assert models.get("digits").version == published.version
    assert len(models.loads) == 1  # the request found the session the preload built


def test_star_preloads_every_model(models, published, registry, digits_onnx):
    registry.publish("digits-two", digits_onnx, digits_manifest())
    Preload(models, "*").start().wait()
    assert sorted(m["model"] for m in models.loaded()) == ["digits", "digits-two"]


def test_a_model_that_cannot_load_is_logged_and_the_others_still_load(models, published, caplog):
    caplog.set_level(logging.WARNING)
    Preload(models, "no-such-model,digits").start().wait()
    assert [m["model"] for m in models.loaded()] == ["digits"]
    (warning,) = [r for r in caplog.records if r.getMessage() == "model not preloaded"]
    assert (warning.model, warning.code) == ("no-such-model", "model_not_found")


def test_on_demand_init_does_not_wait_for_the_preload(models, published, monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
    with models._lock:  # a load in progress elsewhere holds the cache: the preload waits behind it
        preload = Preload(models, "digits").start()
        preload.finish_init()  # returns at once: INIT ends while the model is still loading
        assert models.loaded() == []
    preload.wait()
    assert [m["model"] for m in models.loaded()] == ["digits"]


def test_init_goes_on_only_once_the_download_can_start(models, published, monkeypatch):
    """The S3 client and the first model's alias are ready before INIT's imports resume: done beside them, that
    work (all GIL-bound) took twice as long and BERT-base int8's download started 0.1 s later (make bench-large)."""
    order = []
    route = models.route

    def slow_route(*args, **kwargs):
        time.sleep(0.05)  # a slow registry: the order must not depend on a race
        try:
            return route(*args, **kwargs)
        finally:
            order.append("alias resolved")

    monkeypatch.setattr(models, "route", slow_route)
    with models._lock:  # the load itself waits: only what comes before it is timed here
        preload = Preload(models, "digits").start()
        order.append("INIT resumed")
    preload.wait()
    assert order[:2] == ["alias resolved", "INIT resumed"]
    assert [m["model"] for m in models.loaded()] == ["digits"]


FINISH_INIT_CHILD = r"""
import os, sys, threading
os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"] = "on-demand"
from maas_core.shared.model_cache import ModelCache
from maas_core.shared.preload import Preload
preload = Preload(ModelCache("bucket"), "")
loading = threading.Event()
if sys.argv[1] == "loading":  # stands for a preload thread still downloading
    preload._thread = threading.Thread(target=loading.wait)
    preload._thread.start()
preload.finish_init()
print("onnxruntime" in sys.modules)
loading.set()
"""


@pytest.mark.parametrize(("state", "imported"), [("loading", "True"), ("idle", "False")])
def test_on_demand_init_imports_onnxruntime_while_a_preload_downloads(state, imported):
    """The session build after the download would import it while the request waits (about 0.02 s); INIT's
    thread is idle by then. With nothing loading, an environment that may never serve a model does not pay it."""
    done = subprocess.run([sys.executable, "-c", FINISH_INIT_CHILD, state], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == imported


@pytest.mark.parametrize("init_type", ["provisioned-concurrency", "snap-start"])
def test_a_frozen_or_snapshotted_init_waits_for_the_preload(models, published, monkeypatch, init_type):
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", init_type)
    Preload(models, "digits").start().finish_init()
    assert [m["model"] for m in models.loaded()] == ["digits"]


ARENAS_CHILD = r"""
import ctypes, sys, tempfile, threading
libc = ctypes.CDLL(None)
libc.malloc.restype = libc.fopen.restype = ctypes.c_void_p
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "with-cache":
    from maas_core.shared.model_cache import ModelCache
    ModelCache("bucket")  # as the handler makes it, before the preload thread starts
blocks = []
thread = threading.Thread(target=lambda: blocks.extend(libc.malloc(1000) for _ in range(100)))
thread.start()
thread.join()
with tempfile.NamedTemporaryFile(suffix=".xml") as report:
    stream = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    print(open(report.name).read().count("<heap nr="))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc arenas are glibc's (Lambda's runtime is glibc)")
def test_a_thread_started_after_the_model_cache_allocates_from_the_main_arena():
    """A preloaded cold request peaked 7-8 MiB above one loaded by the request (10 MiB transformer: 150 vs 143 MiB):
    the preload thread built its session in its own malloc arena, beside what the handler's imports freed in
    the main one. With one arena both peak alike (140 vs 140 MiB)."""

    def arenas(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", ARENAS_CHILD, mode], capture_output=True, text=True, check=True)
        return int(done.stdout.strip().splitlines()[-1])

    assert arenas("plain") == 2  # glibc's default: the thread gets an arena of its own
    assert arenas("with-cache") == 1
