"""templates/batch.yaml and the batch storage of template.yaml: the queue, its dead letters, the
function's grants and settings, and the SQS events in events/."""

from __future__ import annotations

import ast
import json
import re
from hashlib import md5
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest
from template_support import (
    BATCH_EVENTS,
    BATCH_HANDLER,
    BUCKET_NAME,
    LOGS_AND_TRACES_SIDS,
    ROOT,
    as_list,
    bucket_arn,
    deployed,
    environ_reads,
    handler_source,
    inline_statements,
)

from maas import template_check


def _expiring_rules(bucket: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The enabled lifecycle rules that expire the current version of `key` (S3 matches on Prefix)."""
    return [
        rule
        for rule in bucket["Properties"]["LifecycleConfiguration"]["Rules"]
        if rule["Status"] == "Enabled" and "ExpirationInDays" in rule and key.startswith(rule.get("Prefix", ""))
    ]


@pytest.mark.parametrize("days", ["15", "90"])
def test_batch_objects_expire_after_the_retention_parameter_and_models_never(
    template: dict[str, Any], days: str
) -> None:
    stack = deployed(template_check.translate(template, root=ROOT), {"BatchRetentionDays": days})
    bucket = stack["Resources"]["ModelBucket"]
    for key in (
        "batch/jobs/0123456789abcdef.json",
        "batch/in/digits/production/jobs/0123456789abcdef/input.jsonl",
        "batch/out/digits/production/file.jsonl/0123abcd/results.jsonl",
    ):
        (rule,) = _expiring_rules(bucket, key)
        assert rule["ExpirationInDays"] == days, key
        # Gone, not only hidden: its versions and the delete marker follow.
        assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}, key
    for key in (
        "models/digits/20260101T120000Z-0123abcd/model.onnx",
        "models/digits/aliases/production.json",
        "models/digits/history/production/20260101T120000000000Z-0123abcd.json",
        "training-data/digits/start.json",
        "training-jobs/job-1/output/model.tar.gz",
    ):
        assert _expiring_rules(bucket, key) == [], key
    rules = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
    assert {
        "Id": "RemoveBatchDeleteMarkers",
        "Status": "Enabled",
        "Prefix": "batch/",
        "ExpiredObjectDeleteMarker": True,
    } in rules
    (abort,) = [r for r in rules if "AbortIncompleteMultipartUpload" in r]
    assert "Prefix" not in abort and abort["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}


def test_batch_files_outlive_every_message_that_may_still_score_them(template: dict[str, Any]) -> None:
    # A file deleted while its message waits in a queue (or for a redrive) could never be scored.
    parameter = template["Parameters"]["BatchRetentionDays"]
    resources = template["Resources"]
    longest = max(resources[q]["Properties"]["MessageRetentionPeriod"] for q in ("BatchQueue", "BatchDeadLetterQueue"))
    assert parameter["MinValue"] * 86400 > longest
    assert parameter["Default"] >= parameter["MinValue"]


@pytest.mark.parametrize("topic", ["", "arn:aws:sns:us-east-1:123456789012:on-call"], ids=["no-topic", "topic"])
def test_a_message_in_the_batch_dead_letter_queue_raises_an_alarm(template: dict[str, Any], topic: str) -> None:
    stack = deployed(template_check.translate(template, root=ROOT), {"AlarmTopicArn": topic})
    alarm = stack["Resources"]["BatchDeadLetterAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["BatchDeadLetterQueue", "QueueName"]}}
    ]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert alarm["Statistic"] == "Maximum" and alarm["TreatMissingData"] == "notBreaching"
    assert alarm.get("AlarmActions", []) == alarm.get("OKActions", []) == ([topic] if topic else [])


def test_batch_queue_redrives_to_the_dead_letter_queue_and_outlasts_the_function(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    queue = resources["BatchQueue"]["Properties"]
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["BatchDeadLetterQueue", "Arn"]}
    assert int(redrive["maxReceiveCount"]) >= 1
    # AWS's guidance for a Lambda event source: a message must stay hidden while a retried
    # invocation may still hold it, or a second container scores the same file at the same time.
    timeout = resources["BatchFunction"]["Properties"]["Timeout"]
    assert int(queue["VisibilityTimeout"]) >= 6 * int(timeout)
    # A standard queue's message keeps its first enqueue time in the DLQ: a shorter retention there
    # would expire failures before anyone looks at them.
    dead_letter = resources["BatchDeadLetterQueue"]["Properties"]
    assert int(dead_letter["MessageRetentionPeriod"]) >= int(queue["MessageRetentionPeriod"])
    assert "RedrivePolicy" not in dead_letter


def test_only_this_accounts_model_bucket_may_send_to_the_batch_queue(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    allows = [
        (policy["Queues"], s)
        for policy in (r["Properties"] for r in resources.values() if r["Type"] == "AWS::SQS::QueuePolicy")
        for s in policy["PolicyDocument"]["Statement"]
        if s["Effect"] == "Allow" and {"Ref": "BatchQueue"} in policy["Queues"]
    ]
    assert len(allows) == 1, "one grant only: S3 sending the model bucket's notifications"
    ((queues, allow),) = allows
    assert queues == [{"Ref": "BatchQueue"}]
    assert allow["Principal"] == {"Service": "s3.amazonaws.com"}
    assert as_list(allow["Action"]) == ["sqs:SendMessage"]
    assert as_list(allow["Resource"]) == [{"Fn::GetAtt": ["BatchQueue", "Arn"]}]
    # Without both conditions any bucket, in any account, could feed files to BatchFunction.
    assert allow["Condition"] == {
        "ArnLike": {"aws:SourceArn": bucket_arn()},
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
    }


def test_model_bucket_notifies_the_batch_queue_only_for_batch_in(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["ModelBucket"]
    notifications = bucket["Properties"]["NotificationConfiguration"]
    # The queue gets batch/in/ only; EventBridge gets events for the training state machine's rule.
    assert set(notifications) == {"QueueConfigurations", "EventBridgeConfiguration"}
    (config,) = notifications["QueueConfigurations"]
    assert config["Queue"] == {"Fn::GetAtt": ["BatchQueue", "Arn"]}
    assert config["Event"].startswith("s3:ObjectCreated:")
    assert config["Filter"] == {"S3Key": {"Rules": [{"Name": "prefix", "Value": "batch/in/"}]}}
    # Results and models must not announce themselves: a result under batch/in/ would be scored again.
    prefix = config["Filter"]["S3Key"]["Rules"][0]["Value"]
    assert not any(key.startswith(prefix) for key in ("batch/out/x.jsonl", "models/digits/aliases/production.json"))
    # S3 tests the destination when the notification is put: the queue policy must exist first.
    assert "BatchQueuePolicy" in as_list(bucket["DependsOn"])


def test_batch_function_takes_one_file_per_message_and_reports_item_failures(
    template: dict[str, Any], translated: dict[str, Any]
) -> None:
    function = template["Resources"]["BatchFunction"]["Properties"]
    (event,) = function["Events"].values()
    assert event["Type"] == "SQS"
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": ["BatchQueue", "Arn"]}
    assert event["Properties"]["BatchSize"] == 1
    # Without it one failed message makes Lambda retry the whole batch, or a caught error deletes it.
    mappings = [
        r["Properties"] for r in translated["Resources"].values() if r["Type"] == "AWS::Lambda::EventSourceMapping"
    ]
    (mapping,) = mappings
    assert mapping["FunctionName"] == {"Ref": "BatchFunction"}
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["BatchQueue", "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_batch_function_reads_models_and_inputs_and_writes_only_results(translated: dict[str, Any]) -> None:
    statements = inline_statements(translated, "BatchFunctionRole")
    assert statements, "BatchFunction has no inline policy: it could read neither models nor inputs"
    statements = [s for s in statements if s.get("Sid") not in LOGS_AND_TRACES_SIDS]
    bucket = bucket_arn()["Fn::Sub"]
    readable = {f"{bucket}/models/*", f"{bucket}/batch/in/*", f"{bucket}/batch/out/*"}
    actions: set[str] = set()
    gets: list[str] = []
    for statement in statements:
        assert statement["Effect"] == "Allow"
        granted = as_list(statement["Action"])
        if all(action.startswith("sqs:") for action in granted):  # its own queue only
            assert statement["Resource"] == {"Fn::GetAtt": ["BatchQueue", "Arn"]}
            actions.update(granted)
            continue
        arns = [r["Fn::Sub"] if isinstance(r, dict) else r for r in as_list(statement["Resource"])]
        actions.update(granted)
        for action in granted:
            assert "*" not in action, f"wildcard action {action!r}"
        for arn in arns:
            assert arn != "*" and ":::*" not in arn, f"unbounded resource {arn!r}"
            assert arn == bucket or arn.startswith(f"{bucket}/"), f"not the model bucket: {arn!r}"
        for action in granted:
            if action in {"s3:PutObject", "s3:AbortMultipartUpload"} or action.startswith("s3:Delete"):
                assert arns == [f"{bucket}/batch/out/*"], f"{action} outside batch/out/: {arns}"
            elif action == "s3:GetObject":
                assert set(arns) <= readable, arns
                gets += arns
            elif action == "s3:ListBucket":
                assert arns == [bucket]
                prefixes = statement["Condition"]["StringLike"]["s3:prefix"]
                assert set(as_list(prefixes)) <= {"models/*", "batch/out/*"}
    # Parts of a large file go back through the queue; the poller receives and deletes the messages.
    poller = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
    assert (
        actions
        == {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListBucket", "sqs:SendMessage"} | poller
    )
    # Models and inputs to score, and its own summaries (a redelivered message finds its result).
    assert set(gets) == readable
    # Its own role: for an SQS event SAM's would add AWSLambdaSQSQueueExecutionRole (every queue, "*").
    function = translated["Resources"]["BatchFunction"]["Properties"]
    assert function["Role"] == {"Fn::GetAtt": ["BatchFunctionRole", "Arn"]}
    assert translated["Resources"]["BatchFunctionRole"]["Properties"].get("ManagedPolicyArns", []) == []


def test_batch_function_settings(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    function = resources["BatchFunction"]["Properties"]
    assert function["CodeUri"] == "src/"
    assert function["Handler"] == "maas_core.functions.batch.app.lambda_handler"
    assert function["Timeout"] == 900, "Lambda's maximum: a file is scored in one invocation"
    assert function["MemorySize"] == {"Ref": "BatchMemorySize"}
    memory = template["Parameters"]["BatchMemorySize"]
    assert (memory["Type"], memory["Default"], memory["MinValue"], memory["MaxValue"]) == ("Number", 2048, 128, 10240)
    env = function["Environment"]["Variables"]
    assert int(env["BATCH_CHUNK_ROWS"]) > 0
    assert env["POWERTOOLS_SERVICE_NAME"] == "maas-batch"
    # The bucket and the other settings come from Globals, as ApiFunction's do.
    assert "MODEL_BUCKET" not in env and "Runtime" not in function and "Tracing" not in function
    logs = {logical_id: r["Properties"] for logical_id, r in resources.items() if r["Type"] == "AWS::Logs::LogGroup"}
    assert logs["BatchFunctionLogGroup"]["RetentionInDays"] == logs["ApiFunctionLogGroup"]["RetentionInDays"]


def test_every_setting_the_batch_handler_reads_is_configured(template: dict[str, Any]) -> None:
    configured = set(template["Globals"]["Function"]["Environment"]["Variables"])
    configured |= set(template["Resources"]["BatchFunction"]["Properties"]["Environment"]["Variables"])
    read = environ_reads(handler_source(BATCH_HANDLER))
    for module in sorted((ROOT / "src" / "shared").glob("batch*.py")):
        read |= environ_reads(ast.parse(module.read_text(encoding="utf-8")))
    assert read <= configured, f"os.environ[...] with no value in the template: {read - configured}"


def test_outputs_name_the_batch_queues_function_and_input_prefix(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["BatchQueueUrl"]["Value"] == {"Ref": "BatchQueue"}
    assert outputs["BatchDeadLetterQueueUrl"]["Value"] == {"Ref": "BatchDeadLetterQueue"}
    assert outputs["BatchFunctionArn"]["Value"] == {"Fn::GetAtt": ["BatchFunction", "Arn"]}
    assert outputs["BatchInputPrefix"]["Value"] == {"Fn::Sub": f"s3://{BUCKET_NAME}/batch/in/"}


def _sqs_record(name: str) -> dict[str, Any]:
    (record,) = json.loads((ROOT / "events" / name).read_text(encoding="utf-8"))["Records"]
    return record


@pytest.mark.parametrize("path", BATCH_EVENTS, ids=lambda p: p.name)
def test_batch_event_is_an_sqs_message_from_the_batch_queue(path: Path, template: dict[str, Any]) -> None:
    (record,) = json.loads(path.read_text(encoding="utf-8"))["Records"]
    assert record["eventSource"] == "aws:sqs"
    assert re.fullmatch(r"arn:aws:sqs:[a-z0-9-]+:[0-9]{12}:BatchQueue", record["eventSourceARN"])
    assert "BatchQueue" in template["Resources"]
    assert record["messageId"] and record["receiptHandle"]
    assert int(record["attributes"]["ApproximateReceiveCount"]) >= 1
    assert record["md5OfBody"] == md5(record["body"].encode()).hexdigest()
    assert isinstance(json.loads(record["body"]), dict)


def test_batch_put_event_announces_a_file_under_the_notified_prefix(template: dict[str, Any]) -> None:
    record = _sqs_record("batch_s3_put.json")
    (notification,) = json.loads(record["body"])["Records"]
    assert notification["eventSource"] == "aws:s3"
    assert notification["eventName"] == "ObjectCreated:Put"
    assert notification["awsRegion"] == record["awsRegion"]
    s3 = notification["s3"]
    bucket = s3["bucket"]["name"]
    # The name the template gives the bucket, for some stack, account and region.
    pattern = re.escape(BUCKET_NAME).replace(re.escape("${AWS::StackName}"), "[a-z0-9-]+")
    pattern = pattern.replace(re.escape("${AWS::AccountId}"), "[0-9]{12}")
    assert re.fullmatch(pattern.replace(re.escape("${AWS::Region}"), re.escape(record["awsRegion"])), bucket)
    assert s3["bucket"]["arn"] == f"arn:aws:s3:::{bucket}"
    # S3 sends keys URL-encoded; the handler decodes them.
    key = unquote_plus(s3["object"]["key"])
    assert key == "batch/in/digits/production/sample.jsonl"
    (config,) = template["Resources"]["ModelBucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert key.startswith(config["Filter"]["S3Key"]["Rules"][0]["Value"])
    assert s3["object"]["size"] == 1234
    assert re.fullmatch(r"[0-9a-f]{32}", s3["object"]["eTag"])


def test_batch_test_event_is_the_message_s3_sends_when_the_notification_is_set() -> None:
    message = json.loads(_sqs_record("batch_s3_test_event.json")["body"])
    assert message["Service"] == "Amazon S3"
    assert message["Event"] == "s3:TestEvent"
    assert "Records" not in message, "the handler must tell it from a file announcement and ignore it"
    assert (
        message["Bucket"] == json.loads(_sqs_record("batch_s3_put.json")["body"])["Records"][0]["s3"]["bucket"]["name"]
    )


def test_batch_function_knows_its_ephemeral_storage(template: dict[str, Any]) -> None:
    function = template["Resources"]["BatchFunction"]["Properties"]
    assert function["EphemeralStorage"] == {"Size": {"Ref": "BatchEphemeralStorage"}}
    # The handler sizes its /tmp model cache to the same value (src/shared/model_files.py).
    assert function["Environment"]["Variables"]["EPHEMERAL_STORAGE_MB"] == {"Ref": "BatchEphemeralStorage"}
    storage = template["Parameters"]["BatchEphemeralStorage"]
    assert (storage["Type"], storage["Default"], storage["MinValue"], storage["MaxValue"]) == (
        "Number",
        512,
        512,
        10240,
    )
