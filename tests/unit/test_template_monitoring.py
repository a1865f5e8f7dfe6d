"""templates/monitoring.yaml: the API and canary alarms and CanaryGuardFunction, the automatic rollback."""

from __future__ import annotations

from typing import Any

import pytest
from template_support import (
    BUCKET_NAME,
    ROOT,
    as_list,
    deployed,
    inline_statements,
    only_this_rule_may_send,
    parked_with_an_alarm,
)

from maas import template_check


@pytest.mark.parametrize("topic", ["", "arn:aws:sns:us-east-1:123456789012:on-call"], ids=["no-topic", "topic"])
def test_a_canary_rollback_that_failed_is_parked_and_raises_an_alarm(template: dict[str, Any], topic: str) -> None:
    # Without this a failed run left the canary serving, and no second alarm event comes.
    stack = deployed(template_check.translate(template, root=ROOT), {"AlarmTopicArn": topic})
    resources = stack["Resources"]
    (config,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::EventInvokeConfig"]
    assert config["FunctionName"] == {"Ref": "CanaryGuardFunction"}
    assert config["DestinationConfig"] == {
        "OnFailure": {"Destination": {"Fn::GetAtt": ["CanaryGuardDeadLetterQueue", "Arn"]}}
    }
    assert (config["MaximumRetryAttempts"], config["MaximumEventAgeInSeconds"]) == (2, 3600)
    # Lambda sends the failure record as the function's role.
    sends = [
        s for s in inline_statements(stack, "CanaryGuardFunctionRole") if "sqs:SendMessage" in as_list(s["Action"])
    ]
    assert [s["Resource"] for s in sends] == [{"Fn::GetAtt": ["CanaryGuardDeadLetterQueue", "Arn"]}]
    # An alarm event EventBridge could not deliver lands in the same queue.
    only_this_rule_may_send(stack, "CanaryGuardDeadLetterQueue", "CanaryGuardFunctionCanaryAlarm")
    assert resources["CanaryGuardFunctionCanaryAlarm"]["Properties"]["EventPattern"]["source"] == ["aws.cloudwatch"]
    parked_with_an_alarm(stack, "CanaryGuardDeadLetterQueue", "CanaryGuardFailedAlarm", topic)


def _writes(translated: dict[str, Any], role: str) -> dict[str, set[str]]:
    """Write actions of a role -> the model-bucket suffixes they reach."""
    grants: dict[str, set[str]] = {}
    for statement in inline_statements(translated, role):
        for action in as_list(statement["Action"]):
            if action in {"s3:PutObject", "s3:DeleteObject"}:
                suffixes = {r["Fn::Sub"].split(BUCKET_NAME, 1)[1] for r in as_list(statement["Resource"])}
                grants.setdefault(action, set()).update(suffixes)
    return grants


def test_only_the_admin_and_guard_functions_change_aliases_and_only_aliases(translated: dict[str, Any]) -> None:
    alias_objects = {"/models/*/aliases/*", "/models/*/history/*"}
    assert _writes(translated, "AdminFunctionRole") == {
        "s3:PutObject": alias_objects,
        "s3:DeleteObject": {"/models/*/manifest.json", "/models/*/model.onnx", "/models/*/model.onnx.data"},
    }
    assert _writes(translated, "CanaryGuardFunctionRole") == {"s3:PutObject": alias_objects}
    assert not any(
        suffix.startswith("/models") for suffix in _writes(translated, "ApiFunctionRole").get("s3:PutObject", set())
    )


def test_the_canary_alarm_reads_the_metrics_the_api_emits(template: dict[str, Any]) -> None:
    """The alarm's dimensions must be exactly those of the EMF blob ApiFunction writes for a canary request."""
    alarm = template["Resources"]["CanaryErrorAlarm"]["Properties"]
    service = template["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    api_env = template["Resources"]["ApiFunction"]["Properties"].get("Environment", {}).get("Variables", {})
    assert "POWERTOOLS_SERVICE_NAME" not in api_env  # so the service dimension is the Globals' one
    stats = {m["Id"]: m["MetricStat"]["Metric"] for m in alarm["Metrics"] if "MetricStat" in m}
    assert {m["MetricName"] for m in stats.values()} == {"CanaryErrors", "CanaryRequests"}
    namespace = template["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]
    for metric in stats.values():
        assert metric["Namespace"] == namespace
        assert {d["Name"]: d["Value"] for d in metric["Dimensions"]} == {"service": service, "variant": "canary"}
    (rate,) = [m for m in alarm["Metrics"] if m.get("ReturnData")]
    assert "errors / requests" in rate["Expression"]
    assert alarm["Threshold"] == {"Ref": "CanaryErrorRateThreshold"}


@pytest.mark.parametrize("auto", ["true", "false"])
def test_the_canary_alarm_starts_the_guard_unless_turned_off(template: dict[str, Any], auto: str) -> None:
    stack = deployed(template_check.translate(template, root=ROOT), {"CanaryAutoRollback": auto})
    (rule,) = [
        r["Properties"]
        for r in stack["Resources"].values()
        if r["Type"] == "AWS::Events::Rule" and r["Properties"]["EventPattern"].get("source") == ["aws.cloudwatch"]
    ]
    assert rule["EventPattern"]["resources"] == [{"Fn::GetAtt": ["CanaryErrorAlarm", "Arn"]}]
    assert rule["EventPattern"]["detail"] == {"state": {"value": ["ALARM"]}}
    assert rule["State"] == ("ENABLED" if auto == "true" else "DISABLED")
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["CanaryGuardFunction", "Arn"]}


def test_api_alarms_watch_the_named_api_stage(template: dict[str, Any]) -> None:
    api_name = template["Resources"]["Api"]["Properties"]["Name"]
    for logical_id, metric in (("ApiServerErrorAlarm", "5XXError"), ("LatencyAlarm", "Latency")):
        alarm = template["Resources"][logical_id]["Properties"]
        assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/ApiGateway", metric)
        assert alarm["Dimensions"] == [
            {"Name": "ApiName", "Value": api_name},
            {"Name": "Stage", "Value": {"Ref": "StageName"}},
        ]
    assert template["Resources"]["LatencyAlarm"]["Properties"]["ExtendedStatistic"] == "p99"
