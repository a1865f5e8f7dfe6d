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
