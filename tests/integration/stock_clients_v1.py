"""The kserve SDK's REST client, KServe v1 protocol, with its defaults, run in .venv-clients (as
stock_clients.py is): `python stock_clients_v1.py <base url> <inputs.npz>` prints what it got as one JSON
object. tests/integration/test_tfserving_local.py starts it; it imports nothing from the project."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import numpy as np


def kserve_v1(url: str, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    from kserve import InferenceRESTClient, RESTConfig

    async def run() -> dict[str, Any]:
        client = InferenceRESTClient(RESTConfig(protocol="v1"))
        try:
            response = await client.infer(url, {"instances": inputs["image"].tolist()}, "digits")
            return {"model_ready": await client.is_model_ready(url, "digits"), "predictions": response["predictions"]}
        finally:
            await client.close()

    return asyncio.run(run())


if __name__ == "__main__":
    base_url, path = sys.argv[1:3]
    with np.load(path) as arrays:
        data = {name: arrays[name] for name in arrays.files}
    print(json.dumps(kserve_v1(base_url, data)))
