"""The AWS clients: botocore's service models read with orjson, the same models as botocore reads them."""

import os

import botocore
import pytest
from botocore.loaders import JSONFileLoader

from maas_core.shared import aws

DATA = os.path.join(os.path.dirname(botocore.__file__), "data")


@pytest.mark.parametrize(
    "model",
    [
        "endpoints",
        "partitions",
        "s3/2006-03-01/service-2",
        "s3/2006-03-01/endpoint-rule-set-1",
        "sqs/2012-11-05/service-2",
    ],
)
def test_a_service_model_reads_as_botocore_reads_it(model):
    path = os.path.join(DATA, model)
    assert aws._orjson_file_loader().load_file(path) == JSONFileLoader().load_file(path)
    assert aws._orjson_file_loader().load_file(path + "-absent") is None


def test_the_s3_client_made_with_it_reads_and_writes(s3):
    client = aws._client("s3")
    client.put_object(Bucket="maas-test-models", Key="k", Body=b"v")
    assert client.get_object(Bucket="maas-test-models", Key="k")["Body"].read() == b"v"
    assert client.meta.config.connect_timeout == 2 and client.meta.config.read_timeout == 5


def test_the_functions_make_their_clients_without_importing_boto3():
    # boto3's session layer cost a cold request ~19 ms before its first byte (shared.aws); the sam build package
    # does not ship it, so an import of it would fall back to the Lambda runtime's own copy.
    import json
    import subprocess
    import sys

    from tests_support import HANDLER_ENV

    script = (
        "import sys, maas_core.functions.api.app, maas_core.functions.batch.app\n"
        "from maas_core.shared import aws\n"
        "aws.s3_client(); aws.sqs_client(); aws.model_transfer_config()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'boto3'))\n"
    )
    env = {**os.environ, **HANDLER_ENV, "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x"}
    env["AWS_SECRET_ACCESS_KEY"] = "y"
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1].replace("'", '"')) == []
