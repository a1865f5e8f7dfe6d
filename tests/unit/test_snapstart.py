"""SnapStart hooks of ApiFunction, called as the python3.12+ runtime calls them."""

import pytest

from tests_support import event


@pytest.fixture
def hooks(api):
    import snapshot_restore_py

    from maas_core.functions.api import app

    before = [f for f, _, _ in snapshot_restore_py._before_snapshot_registry if f is app._before_snapshot]
    after = [f for f, _, _ in snapshot_restore_py._after_restore_registry if f is app._after_restore]
    assert before and after, "ApiFunction registers its hooks at import"
    return app, before[0], after[0]


def test_a_snap_start_init_ends_with_the_preloaded_models_in_memory(published, registry, monkeypatch):
    from maas_core.shared.model_cache import ModelCache
    from maas_core.shared.preload import Preload

    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")
    models = ModelCache(registry.bucket, registry=registry)
    Preload(models, "*").start().finish_init()  # what the handler does at import: the snapshot comes next
    assert [(m["model"], m["version"]) for m in models.loaded()] == [("digits", published.version)]


def test_a_restored_copy_renews_its_clients_id_and_aliases(hooks, api, published, registry):
    app, _, after = hooks
    from maas_core.shared.aws import s3_client

    status, body, _ = api(event("predict_digits"))
    assert status == 200
    container, client = app.CONTAINER_ID, s3_client()
    after()
    assert container != app.CONTAINER_ID and s3_client() is not client
    assert app.models._routes == {} and app.models._registry is None
    app.models._registry = registry  # the moto registry again (a real restore builds it from the new client)
    status, body, _ = api(event("predict_digits"))
    assert status == 200 and body["version"] == published.version
