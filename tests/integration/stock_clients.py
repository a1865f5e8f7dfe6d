"""Stock KServe v2 clients with their defaults, run in their own venv (.venv-clients: `make test`
builds it from constraints-clients.txt). tests/integration/test_stock_clients.py starts this file
there as a subprocess: `python stock_clients.py triton|kserve <base url> <inputs.npz>`; it prints what
the client got as one JSON object (arrays as lists), and imports nothing from the project.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import numpy as np


def triton(url: str, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """tritonclient.http as its README uses it: binary inputs and outputs (its defaults), on the image
    model (digits), the two-input model (blend) and the text model (reviews: a BYTES input of raw
    strings, set from an object array as Triton's own examples do)."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=url.removeprefix("http://"))
    image = httpclient.InferInput("image", list(inputs["image"].shape), "FP32")
    image.set_data_from_numpy(inputs["image"])
    texts = np.array(inputs["text"].tolist(), dtype=object)  # str elements: the client encodes them UTF-8
    text = httpclient.InferInput("text", list(texts.shape), "BYTES")
    text.set_data_from_numpy(texts)
    blend = []
    for name in ("features", "extra"):
        tensor = httpclient.InferInput(name, list(inputs[name].shape), "FP32")
        tensor.set_data_from_numpy(inputs[name])
        blend.append(tensor)
    return {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "server": client.get_server_metadata(),
        "digits": _triton_model(client, "digits", image),
        "reviews": _triton_model(client, "reviews", text),
        "blend": client.infer("blend", blend).as_numpy("score").tolist(),
    }


def _triton_model(client: Any, model: str, tensor: Any) -> dict[str, Any]:
    """One single-input classifier's calls: readiness, metadata, infer with the output named and not,
    class_count=3, async_infer with a request id."""
    import tritonclient.http as httpclient

    named = client.infer(model, [tensor], outputs=[httpclient.InferRequestedOutput("probabilities")])
    unnamed = client.infer(model, [tensor])  # no outputs named: binary_data_output on the request
    top = client.infer(model, [tensor], outputs=[httpclient.InferRequestedOutput("probabilities", class_count=3)])
    later = client.async_infer(model, [tensor], request_id="async-1").get_result()
    return {
        "model_ready": client.is_model_ready(model),
        "metadata": client.get_model_metadata(model),
        "named": named.as_numpy("probabilities").tolist(),
        "named_binary": named.get_output("probabilities").get("parameters", {}),
        "unnamed": unnamed.as_numpy("probabilities").tolist(),
        "class_count": [[v.decode() for v in row] for row in top.as_numpy("probabilities").tolist()],
        "async": later.as_numpy("probabilities").tolist(),
        "async_id": later.get_response().get("id"),
    }


def kserve(url: str, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """The kserve SDK's REST client, v2, with its defaults (binary inputs, JSON outputs)."""
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    async def run() -> dict[str, Any]:
        client = InferenceRESTClient(RESTConfig(protocol="v2"))
        try:
            image = InferInput("image", list(inputs["image"].shape), "FP32")
            image.set_data_from_numpy(inputs["image"])
            response = await client.infer(url, InferRequest(model_name="digits", infer_inputs=[image]), "digits")
            return {
                "live": await client.is_server_live(url),
                "ready": await client.is_server_ready(url),
                "model_ready": await client.is_model_ready(url, "digits"),
                "outputs": response.outputs[0].as_numpy().tolist(),
            }
        finally:
            await client.close()

    return asyncio.run(run())


if __name__ == "__main__":
    which, base_url, path = sys.argv[1:4]
    with np.load(path) as arrays:
        data = {name: arrays[name] for name in arrays.files}
    print(json.dumps({"triton": triton, "kserve": kserve}[which](base_url, data)))
