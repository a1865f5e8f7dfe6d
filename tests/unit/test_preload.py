"""PRELOAD_MODELS: the production versions an environment loads during INIT (shared.preload)."""

import logging
import platform
import subprocess
import sys

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
