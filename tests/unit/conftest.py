"""Handlers called as Lambda calls them: with the events in events/ (the files `sam local invoke -e` takes)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from template_support import stack, translated_stack

from maas_core.shared.model_cache import ModelCache
from tests_support import calling


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    """The whole nested stack as CloudFormation deploys it (tests/template_support.py)."""
    return stack()


@pytest.fixture(scope="session")
def translated() -> dict[str, Any]:
    """The same after the SAM transform."""
    return translated_stack()


@pytest.fixture
def api(registry, monkeypatch):
    """ApiFunction with a fresh model cache (alias TTL 0: every request re-checks the alias)."""
    from maas_core.functions.api import app

    cache = ModelCache(os.environ["MODEL_BUCKET"], alias_ttl_seconds=0, registry=registry, on_load=app.models.on_load)
    monkeypatch.setattr(app, "models", cache)
    return calling(app)


@pytest.fixture
def handler(api):
    def call(evt: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        status, body, _ = api(evt)
        return status, body

    return call


@pytest.fixture
def admin(registry, monkeypatch):
    from maas_core.functions.admin import app

    monkeypatch.setattr(app, "_registry", lambda: registry)
    return calling(app)
