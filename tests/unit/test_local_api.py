"""The local API's proxy events: the caller's API key id, as API Gateway gives it, never the key."""

from __future__ import annotations

import json

from maas.local_api import api_key_id, proxy_event
from maas.template import route as make_route


def test_the_event_names_the_callers_key_by_an_id_never_by_the_key():
    route = make_route("get", "/jobs/{job_id}")
    alice = proxy_event("GET", "/jobs/abc", {"x-api-key": "alice-secret-key"}, b"", route, {"job_id": "abc"}, "v1")
    identity = alice["requestContext"]["identity"]
    assert identity["apiKeyId"] == api_key_id({"X-Api-Key": "alice-secret-key"})  # any header spelling
    assert "alice-secret-key" not in json.dumps(alice["requestContext"])
    bob = proxy_event("GET", "/jobs/abc", {"x-api-key": "bob-secret-key"}, b"", route, {"job_id": "abc"}, "v1")
    assert bob["requestContext"]["identity"]["apiKeyId"] != identity["apiKeyId"]
    keyless = proxy_event("GET", "/jobs/abc", {}, b"", route, {"job_id": "abc"}, "v1")
    assert keyless["requestContext"]["identity"]["apiKeyId"] is None  # every keyless local caller is one caller


def test_a_response_header_with_cr_or_lf_is_a_502_not_a_hung_client():
    """A function that answers a header with a newline in it: the client gets 502 at once, the framing
    intact, instead of headers cut short and a wait for a body that never comes."""
    import urllib.error
    import urllib.request
    from types import SimpleNamespace

    from maas.embedded_s3 import free_port
    from maas.local_api import LocalApi

    class Function:  # the function's side of the proxy integration: what a handler returned
        spec = SimpleNamespace(routes=[make_route("get", "/health")])

        def invoke(self, event):
            return {"statusCode": 200, "headers": {"X-Model-Version": "v1\r\nX-Injected: 1"}, "body": "{}"}

    api = LocalApi([Function()], stage="api", port=free_port(), quiet=True).start()  # type: ignore[list-item]
    try:
        with urllib.request.urlopen(f"{api.url}/health", timeout=10) as response:
            raise AssertionError(f"expected 502, got {response.status}")
    except urllib.error.HTTPError as err:
        assert err.code == 502 and "X-Injected" not in err.headers
    finally:
        api.stop()
