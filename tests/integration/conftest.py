"""The local stack as a fixture: `maas local start-api` in its own process, models published into it."""

from __future__ import annotations

import pytest

from tests_support import build_reviews_onnx, reviews_manifest, running_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """start-api in its own process with a fresh state folder; the digits model published into it."""
    # Parts of 1 MB, so that the 10,000-row batch file is fanned out as a 5 GB one would be.
    with running_stack(tmp_path_factory.mktemp("maas-state"), {"BatchFunction": {"BATCH_PART_BYTES": "1000000"}}) as s:
        yield s


@pytest.fixture(scope="module")
def reviews(stack):
    """A real text model (tests_support.build_reviews_onnx: word tokenizer in the manifest, a bag-of-words
    classifier in the graph) published into this module's stack as "reviews"; only the modules that ask
    for it get it, so the others' model lists stay digits and blend."""
    return stack["registry"].publish("reviews", build_reviews_onnx(), reviews_manifest())
