"""Version numbers through the local stack (`maas local start-api` -> RIE -> ApiFunction, embedded S3): a
client that pins `/versions/1`, as TF Serving and KServe clients do, gets the first published version, named
in full in the body and in X-Model-Version."""

from __future__ import annotations

import json
import subprocess
import urllib.request

import pytest

from tests_support import MAAS, http

pytestmark = pytest.mark.integration


def a_zero() -> list:
    from sklearn.datasets import load_digits

    return load_digits().images[0][:, :, None].tolist()


def test_a_version_pinned_by_its_number_is_described_and_answers_predictions(stack):
    url, version = stack["url"], stack["version"]
    status, body = http("GET", f"{url}/models/digits/versions/1")
    assert status == 200, body
    assert (body["version"], body["version_number"], body["manifest"]["version_number"]) == (version, 1, 1)

    request = urllib.request.Request(
        f"{url}/models/digits/versions/1/predict",
        data=json.dumps({"instances": [a_zero()]}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        status, headers, body = response.status, response.headers, json.loads(response.read())
    assert status == 200 and body["version"] == version and body["predictions"][0]["label"] == "0"
    assert (headers["X-Model-Version"], headers["X-Model-Variant"]) == (version, "pinned")

    status, body = http("GET", f"{url}/v2/models/digits/versions/1/ready")
    assert status == 200 and body["version"] == version
    status, body = http("GET", f"{url}/models/digits/versions/2")
    assert (status, body["code"]) == (404, "version_not_found")
    status, body = http("GET", f"{url}/models/digits/versions/0")
    assert (status, body["code"]) == (400, "invalid_name")


def test_maas_models_list_shows_each_version_with_its_number(stack):
    result = subprocess.run(
        [*MAAS, "models", "list", "--json"], env=stack["env"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    listed = {m["name"]: m["versions"] for m in json.loads(result.stdout)}
    assert listed["digits"] == [{"version": stack["version"], "number": 1}]
