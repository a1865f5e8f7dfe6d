"""Builders the tests share: a real digits classifier as ONNX and the manifest training would write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from maas_core.shared.manifest import Manifest

ROOT = Path(__file__).resolve().parents[1]
MAAS = [sys.executable, "-m", "maas.cli"]

# What the template's Globals give every function (local values); tests import the handler with it.
HANDLER_ENV = {
    "MODEL_BUCKET": "maas-test-models",
    "MAX_BODY_BYTES": "5000000",
    "MAX_BATCH_SIZE": "256",
    "ALIAS_TTL_SECONDS": "30",
    "POWERTOOLS_SERVICE_NAME": "maas",
    "POWERTOOLS_METRICS_NAMESPACE": "MaaS",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",  # the template's Globals: a traced test traces as deployed
    "AWS_DEFAULT_REGION": "us-east-1",
    "CORS_ALLOW_ORIGIN": "",
    "OPTIMIZED_MODEL_DIR": "/tmp/maas-test-optimized",  # tests/conftest.py: a fresh folder per run
    "BATCH_CHUNK_ROWS": "64",
    "BATCH_PART_BYTES": "268435456",
    "BATCH_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/BatchQueue",
}


def digits_data() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype("float32")[..., None], digits.target.astype("int64")


def serialized(graph: Any) -> bytes:
    """A checked ONNX model (opset 17, IR 8, what the serving onnxruntime loads) of this graph, as bytes."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def build_digits_onnx(seed: int = 0) -> bytes:
    """A real classifier: scikit-learn's logistic regression on digits, written as an ONNX graph
    (Reshape -> MatMul -> Add -> Softmax) with the same input/output contract as the Keras job."""
    from onnx import TensorProto, helper, numpy_helper
    from sklearn.linear_model import LogisticRegression

    x, y = digits_data()
    clf = LogisticRegression(max_iter=300, random_state=seed).fit(x.reshape(len(x), -1) / 16.0, y)
    weights = (clf.coef_.T / 16.0).astype("float32")  # rescaling baked in: clients send raw 0..16
    bias = clf.intercept_.astype("float32")
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["image", "flat_shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "weights"], ["logits0"]),
            helper.make_node("Add", ["logits0", "bias"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        ],
        # lbfgs ignores the seed, so the seed goes in the graph's name: each seed is other bytes (another
        # sha256), which the serving file cache, keyed by sha256, downloads on its own.
        "digits" if seed == 0 else f"digits-{seed}",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 8, 8, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 10])],
        initializer=[
            numpy_helper.from_array(np.array([-1, 64], dtype="int64"), "flat_shape"),
            numpy_helper.from_array(weights, "weights"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    return serialized(graph)


def digits_manifest() -> dict[str, Any]:
    """What training hands the registry (the registry adds name, version and artifact)."""
    return {
        "schema_version": 1,
        "created_at": "2026-11-24T00:00:00+00:00",
        "task": "classification",
        "inputs": [{"name": "image", "dtype": "float32", "shape": [None, 8, 8, 1]}],
        "outputs": [{"name": "probabilities", "dtype": "float32", "shape": [None, 10]}],
        "labels": [str(i) for i in range(10)],
        "preprocessing": {"client": "raw 8x8x1 pixel intensities 0..16", "in_graph": ["rescale 1/16"]},
        "compression": {"method": "fp32", "candidates": []},
        "metrics": {"accuracy": 0.97},
        "training_job": {"id": "unit-test", "instance_type": "local", "duration_s": 1.0, "hyperparameters": {}},
        "framework": {"onnx_opset": 17},
    }


def verified(draft: dict[str, Any], name: str = "digits", version: str = "20260101T000000Z-00000000") -> Manifest:
    """A draft as the registry would verify it for name/version (without writing anything)."""
    from maas_core.shared.manifest import Manifest

    artifact = {"file": "model.onnx", "sha256": "0" * 64, "size_bytes": 1}
    return Manifest.from_json({**draft, "name": name, "version": version, "artifact": artifact})


def build_two_input_onnx() -> bytes:
    """A real regression model with two named inputs: score = [features, extra] @ w + b."""
    from onnx import TensorProto, helper, numpy_helper

    weights = np.array([[1.0], [2.0], [3.0], [-1.0], [0.5]], dtype="float32")
    graph = helper.make_graph(
        [
            helper.make_node("Concat", ["features", "extra"], ["joined"], axis=1),
            helper.make_node("MatMul", ["joined", "weights"], ["product"]),
            helper.make_node("Add", ["product", "bias"], ["score"]),
        ],
        "two_inputs",
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, 3]),
            helper.make_tensor_value_info("extra", TensorProto.FLOAT, [None, 2]),
        ],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])],
        initializer=[
            numpy_helper.from_array(weights, "weights"),
            numpy_helper.from_array(np.array([0.25], dtype="float32"), "bias"),
        ],
    )
    return serialized(graph)


def two_input_manifest() -> dict[str, Any]:
    manifest = digits_manifest()
    manifest.update(
        task="regression",
        inputs=[
            {"name": "features", "dtype": "float32", "shape": [None, 3]},
            {"name": "extra", "dtype": "float32", "shape": [None, 2]},
        ],
        outputs=[{"name": "score", "dtype": "float32", "shape": [None, 1]}],
        preprocessing={"client": "raw values"},
    )
    manifest.pop("labels")
    return manifest


def two_input_expected(features: list[float], extra: list[float]) -> float:
    return float(np.dot([*features, *extra], [1.0, 2.0, 3.0, -1.0, 0.5]) + 0.25)


REVIEWS = [
    ("great product, great price", "positive"),
    ("love it, works great", "positive"),
    ("excellent quality and fast delivery", "positive"),
    ("really happy with this, love the price", "positive"),
    ("awful product, broke in a day", "negative"),
    ("terrible quality, do not buy", "negative"),
    ("waste of money, awful", "negative"),
    ("broke fast and support was terrible", "negative"),
    ("it is ok, does the job", "neutral"),
    ("average product for the price", "neutral"),
    ("fine, nothing special", "neutral"),
    ("ok quality, ok delivery", "neutral"),
]
REVIEW_LABELS = ["negative", "neutral", "positive"]


def reviews_tokenizer() -> Any:
    from training.vocabulary import learn_tokenizer

    return learn_tokenizer("word", [text for text, _ in REVIEWS], max_tokens=40, sequence_length=8)


def build_reviews_onnx() -> bytes:
    """A real text classifier on the word tokenizer's ids: scikit-learn's logistic regression on word
    counts, written as an ONNX graph (Gather one weight row per id -> ReduceSum -> Add -> Softmax) whose
    padding row is zero, so the graph computes exactly the bag-of-words model. Milliseconds to build."""
    from onnx import TensorProto, helper, numpy_helper
    from sklearn.linear_model import LogisticRegression

    tokenizer = reviews_tokenizer()
    ids = tokenizer.encode([text for text, _ in REVIEWS])
    counts = np.stack([np.bincount(row, minlength=len(tokenizer.vocabulary)) for row in ids]).astype("float32")
    counts[:, 0] = 0  # padding is no word
    labels = [REVIEW_LABELS.index(label) for _, label in REVIEWS]
    clf = LogisticRegression(max_iter=500, C=10.0).fit(counts, labels)
    weights = clf.coef_.T.astype("float32")
    weights[0] = 0.0
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["weights", "tokens"], ["per_token"]),
            helper.make_node("ReduceSum", ["per_token", "sequence_axis"], ["logits0"], keepdims=0),
            helper.make_node("Add", ["logits0", "bias"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        ],
        "reviews",
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, [None, tokenizer.sequence_length])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, len(REVIEW_LABELS)])],
        initializer=[
            numpy_helper.from_array(weights, "weights"),
            numpy_helper.from_array(np.array([1], dtype="int64"), "sequence_axis"),
            numpy_helper.from_array(clf.intercept_.astype("float32"), "bias"),
        ],
    )
    return serialized(graph)


def reviews_manifest() -> dict[str, Any]:
    """The text model's draft: one string input, tokenised by the manifest's word tokenizer."""
    manifest = digits_manifest()
    text = {"name": "text", "dtype": "string", "shape": [None], "tokenizer": reviews_tokenizer().to_manifest()}
    manifest.update(
        inputs=[text],
        outputs=[{"name": "probabilities", "dtype": "float32", "shape": [None, len(REVIEW_LABELS)]}],
        labels=list(REVIEW_LABELS),
        preprocessing={"client": "raw review text", "in_graph": []},
    )
    return manifest


def reviews_expected(texts: list[str]) -> np.ndarray:
    """The reviews model run here on these strings: the project's tokenisation, then onnxruntime."""
    import onnxruntime as ort

    from maas_core.shared.text import WordTokenizer

    tokenizer = WordTokenizer.from_manifest(reviews_manifest()["inputs"][0]["tokenizer"])
    session = ort.InferenceSession(build_reviews_onnx(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"tokens": tokenizer.encode(texts)})[0])


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None, raw: bool = False
) -> tuple[int, Any]:
    """One request; the JSON body parsed (or the text with raw=True), 4xx/5xx included."""
    request = urllib.request.Request(
        url, data=body, method=method, headers=headers if headers is not None else {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, data = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, data = err.code, err.read()
    if raw:
        return status, data.decode()
    return status, json.loads(data or b"{}")


def free_port() -> int:
    from maas.embedded_s3 import free_port as pick

    return pick()


# -- handlers called as Lambda calls them, with the events in events/ (what `sam local invoke -e` takes)
EVENTS = ROOT / "events"


class Context:
    function_name = "ApiFunction"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ApiFunction"
    aws_request_id = "test-request"


def event(name: str, **changes: Any) -> dict[str, Any]:
    data = json.loads((EVENTS / f"{name}.json").read_text())
    data.update(changes)
    return data


def calling(module: Any) -> Callable[[dict[str, Any]], tuple[int, dict[str, Any], dict[str, str]]]:
    """(status, JSON body, headers) of one invocation of a REST handler module."""

    def call(evt: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        response = module.lambda_handler(evt, Context())
        headers = response.get("headers") or {k: v[-1] for k, v in response["multiValueHeaders"].items()}
        assert headers["Content-Type"] == "application/json"
        return response["statusCode"], json.loads(response["body"]), headers

    return call


# -- the local stack: `maas local start-api` in its own process
def start_api(state: Path, env_vars: dict[str, dict[str, str]]) -> dict[str, Any]:
    """`maas local start-api` with this state folder and these --env-vars, once it answers /health."""
    env = {**os.environ, "MAAS_STATE_DIR": str(state), "MAAS_PROJECT_ROOT": str(ROOT)}
    for var in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(var, None)
    port = free_port()
    log = (state / "start-api.log").open("w")
    env_file = state / "env-vars.json"
    env_file.write_text(json.dumps(env_vars))
    process = subprocess.Popen(
        [*MAAS, "--env-vars", str(env_file), "local", "start-api", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            status, health = http("GET", f"{url}/health")
            if status == 200:
                break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            # Never leave it running: a start-api that answers but not 200 would outlive the test run.
            if process.poll() is None:
                stop_api({"process": process, "log": log}, timeout=10)
            else:
                log.close()
            raise AssertionError(f"start-api did not come up:\n{(state / 'start-api.log').read_text()}")
        time.sleep(0.2)
    return {"url": url, "container": health["container"], "process": process, "log": log, "env": env}


def stop_api(api: dict[str, Any], timeout: float = 30) -> None:
    api["process"].send_signal(signal.SIGINT)
    try:
        api["process"].wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        api["process"].kill()
        api["process"].wait(timeout=timeout)
        raise
    finally:
        api["log"].close()


@contextmanager
def running_stack(state: Path, env_vars: dict[str, dict[str, str]]) -> Iterator[dict[str, Any]]:
    """`maas local start-api` with these --env-vars, digits and blend published; stopped on exit."""
    api = start_api(state, env_vars)

    from maas.embedded_s3 import EmbeddedS3
    from maas.stack import load_template
    from maas_core.shared.registry import Registry

    try:
        template = load_template(str(ROOT / "template.yaml"))
        s3 = EmbeddedS3(state, template.bucket_names()).start()  # reuses the server start-api runs
        assert not s3.owns_server
        bucket = template.function("ApiFunction").environment["MODEL_BUCKET"]
        registry = Registry(bucket, s3.client())
        published = registry.publish("digits", build_digits_onnx(), digits_manifest())
        registry.publish("blend", build_two_input_onnx(), two_input_manifest())
        yield {**api, "state": state, "version": published.version, "s3": s3, "bucket": bucket, "registry": registry}
    finally:
        stop_api(api)
