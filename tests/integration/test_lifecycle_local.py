"""Promote, rollback and canary through the local stack, as a user runs them: `maas models ...` against the
embedded S3 while a warm container keeps answering HTTP requests (alias TTL 2 s)."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter

import pytest

from maas_core.shared.registry import model_key
from tests_support import MAAS, build_digits_onnx, digits_manifest, http, running_stack

pytestmark = pytest.mark.integration

TTL = 2.0
V2 = "20991231T000000Z-0000000b"


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("lifecycle"), {"ApiFunction": {"ALIAS_TTL_SECONDS": str(TTL)}}) as s:
        s["registry"].publish("digits", build_digits_onnx(seed=1), digits_manifest(), version=V2)
        yield s


def maas(local, *argv: str) -> dict:
    done = subprocess.run(
        [*MAAS, "models", *argv, "--json"], env=local["env"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def predict(local, request_id: str | None = None) -> tuple[int, dict]:
    body = json.dumps({"instances": [[[[0.0]] * 8] * 8]}).encode()
    headers = {"Content-Type": "application/json", **({"X-Request-Id": request_id} if request_id else {})}
    return http("POST", f"{local['url']}/models/digits/predict", body, headers)


def container(local) -> str:
    return http("GET", f"{local['url']}/health")[1]["container"]


def version_after(local, expected: str) -> float:
    """Seconds until the warm container answers with ``expected``."""
    started = time.monotonic()
    while time.monotonic() - started < TTL + 5:
        status, body = predict(local)
        assert status == 200
        if body["version"] == expected:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"the warm container still answers {body['version']}, not {expected}")


def test_promote_and_rollback_reach_the_warm_container_within_the_ttl(local):
    v1 = local["version"]
    assert predict(local)[1]["version"] == v1
    warm = container(local)
    maas(local, "promote", "digits", V2, "--reason", "integration")
    assert version_after(local, V2) <= TTL + 0.5
    rolled = maas(local, "rollback", "digits", "--reason", "integration")
    assert rolled["version"] == v1
    assert version_after(local, v1) <= TTL + 0.5
    assert container(local) == warm  # no redeploy, no cold start
    history = maas(local, "history", "digits")
    assert [h["version"] for h in history][-2:] == [V2, v1]


def test_a_10_percent_canary_answers_between_5_and_15_percent_of_1000_requests(local):
    v1 = local["version"]
    # Through the admin route (AdminFunction; IAM auth is API Gateway's, not checked locally).
    change = json.dumps({"canary": {"version": V2, "weight": 0.1}, "reason": "integration"}).encode()
    status, alias = http("PUT", f"{local['url']}/models/digits/aliases/production", change)
    assert status == 200 and alias["canary"] == {"version": V2, "weight": 0.1}
    assert alias["updated_by"].startswith("local:")
    time.sleep(TTL + 0.2)
    answered = Counter(predict(local, f"req-{i}")[1]["version"] for i in range(1000))
    assert set(answered) == {v1, V2}
    assert 50 <= answered[V2] <= 150, answered
    again = {predict(local, "req-42")[1]["version"] for _ in range(5)}
    assert len(again) == 1  # the same request id is answered by the same version
    maas(local, "canary", "digits", "--end")
    time.sleep(TTL + 0.2)
    assert {predict(local)[1]["version"] for _ in range(50)} == {v1}


V3 = "20991231T000002Z-0000000c"


def test_a_version_whose_model_object_was_changed_cannot_be_canaried_or_promoted(local):
    registry = local["registry"]
    registry.publish("digits", build_digits_onnx(), digits_manifest(), version=V3)
    key = model_key("digits", V3)
    data = registry.s3.get_object(Bucket=local["bucket"], Key=key)["Body"].read()
    registry.s3.put_object(Bucket=local["bucket"], Key=key, Body=data[:-10] + b"0123456789")  # same size
    before = maas(local, "history", "digits")
    change = json.dumps({"canary": {"version": V3, "weight": 0.5}, "reason": "integration"}).encode()
    status, body = http("PUT", f"{local['url']}/models/digits/aliases/production", change)
    assert (status, body["code"]) == (409, "version_corrupt"), body
    assert "sha256" in body["details"]["problems"][0]
    done = subprocess.run(
        [*MAAS, "models", "promote", "digits", V3, "--json"],
        env=local["env"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and json.loads(done.stderr)["code"] == "version_corrupt"
    assert maas(local, "history", "digits") == before  # nothing recorded
    assert {predict(local)[1]["version"] for _ in range(20)} == {local["version"]}


def test_a_corrupt_alias_keeps_the_warm_container_on_its_last_good_version_until_a_put_repairs_it(local):
    v1 = local["version"]
    assert predict(local)[1]["version"] == v1
    warm = container(local)
    log = local["state"] / "start-api.log"
    warned_before = log.read_text().count("last good resolution")
    key = "models/digits/aliases/production.json"
    broken = local["registry"].s3.put_object(Bucket=local["bucket"], Key=key, Body=b'{"version": "2099')["ETag"]
    started = time.monotonic()
    answered = []
    while time.monotonic() - started < 2 * TTL + 1:  # past the TTL, twice
        status, body = predict(local)
        assert status == 200, body
        answered.append(body["version"])
        time.sleep(0.05)
    assert set(answered) == {v1} and len(answered) > 20
    warnings = log.read_text().count("last good resolution") - warned_before
    assert 1 <= warnings <= 4, warnings  # once per TTL, not once per request
    status, body = http("GET", f"{local['url']}/models/digits/aliases/production")
    assert (status, body["code"]) == (503, "model_integrity_error")
    repair = json.dumps({"version": V2, "reason": "repair the alias"}).encode()
    status, body = http("PUT", f"{local['url']}/models/digits/aliases/production", repair)
    assert status == 200 and body["version"] == V2, body
    assert version_after(local, V2) <= TTL + 0.5
    assert container(local) == warm
    last = maas(local, "history", "digits")[-1]
    assert (last["version"], last["from"], last["reason"]) == (V2, None, "repair the alias")
    assert last["replaced_unreadable"]["etag"] == broken
