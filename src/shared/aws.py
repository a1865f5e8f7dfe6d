"""AWS clients, created on first use and reused for the life of the container.

They are botocore's, the library boto3 is built on, made without boto3's session: the functions use
clients, paginators, presigned URLs and s3transfer's transfer manager, all botocore's and s3transfer's
own, and none of what boto3 adds (resources, the transfer methods it hangs on every S3 client), whose
imports and hooks a cold request paid before its first byte: the S3 client alone took 165 ms through
boto3 and 146 ms without it (python3.12, the sam build package, a fresh interpreter, three runs each).

The endpoint comes from botocore's own configuration (``AWS_ENDPOINT_URL_S3`` for the embedded S3
used locally), so the same code talks to AWS and to the local stack.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any


def _s3_options() -> dict[str, Any]:
    """Presigned URLs (the jobs API) signed as S3 accepts them on every bucket.

    In us-east-1 botocore would presign with SigV2 on the global endpoint
    (``?AWSAccessKeyId=...&Signature=...``), which S3 refuses on buckets created after June 2020:
    sign with SigV4 on the regional endpoint. Virtual-hosted addressing keeps the regional host
    outside us-east-1 too; a custom endpoint (the embedded S3 on 127.0.0.1) keeps botocore's choice.
    """
    custom = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return {
        "signature_version": "s3v4",
        "s3": {"us_east_1_regional_endpoint": "regional", "addressing_style": "auto" if custom else "virtual"},
    }


def _session() -> Any:
    """A botocore session of its own for each client (as fresh as its client: renewed with it after a SnapStart
    restore), which reads its service models with orjson (``_orjson_file_loader``)."""
    import botocore.session
    from botocore.loaders import Loader

    core = botocore.session.get_session()
    paths = [p for p in str(core.get_config_variable("data_path") or "").split(os.pathsep) if p]  # AWS_DATA_PATH
    core.register_component("data_loader", Loader(extra_search_paths=paths, file_loader=_orjson_file_loader()))
    return core


def _orjson_file_loader() -> Any:
    """botocore's JSON model loader, reading with orjson instead of ``json.loads(object_pairs_hook=OrderedDict)``:
    parsing endpoints.json and S3's model and rules is most of making the S3 client, which a cold request waits
    for before its first byte (timed alone: ~40 ms -> ~27, python3.12, the sam build package). The same files,
    the same search; ``exists`` is botocore's own."""
    import gzip

    import orjson
    from botocore.loaders import JSONFileLoader

    class OrjsonFileLoader(JSONFileLoader):
        def load_file(self, file_path: str) -> Any:
            for extension, opener in ((".json", open), (".json.gz", gzip.open)):
                if os.path.isfile(file_path + extension):
                    with opener(file_path + extension, "rb") as stream:
                        return orjson.loads(stream.read())
            return None

    return OrjsonFileLoader()


def _client(service: str) -> Any:
    from botocore.config import Config  # imported lazily: botocore costs ~100 ms of import on a cold start

    # Every attempt, timeouts and backoff included, must end well inside the API's 29 s: a client
    # gets a 503 it can retry, not API Gateway's 504 after a killed invocation (and a cold start).
    config = Config(
        connect_timeout=2,
        read_timeout=5,
        retries={"max_attempts": 2, "mode": "standard"},
        **(_s3_options() if service == "s3" else {}),
    )
    return _session().create_client(service, config=config)


# A model is fetched in ranged GETs of this size, several at once (ARCHITECTURE.md, Serving).
MODEL_PART_BYTES = 8 * 2**20
MODEL_PART_CONCURRENCY = 8


def model_transfer_config() -> Any:
    """How s3transfer's transfer manager downloads a model: parts of MODEL_PART_BYTES, MODEL_PART_CONCURRENCY at
    a time, each GET under the client's timeouts and retries above. A part whose body stalls is not read
    again from the start (``num_download_attempts=1``): the client's 2 attempts per request are the bound,
    so a stalled download still ends inside the 29 s with a 503. Reads of 256 KiB keep the bytes queued for
    the one thread that hashes and writes them small; at most 100 of them wait (boto3's default queue)."""
    from s3transfer.manager import TransferConfig

    return TransferConfig(
        multipart_threshold=MODEL_PART_BYTES,
        multipart_chunksize=MODEL_PART_BYTES,
        max_request_concurrency=MODEL_PART_CONCURRENCY,
        num_download_attempts=1,
        io_chunksize=256 * 2**10,
        max_io_queue_size=100,
    )


@cache
def s3_client() -> Any:
    return _client("s3")


@cache
def sqs_client() -> Any:
    return _client("sqs")
