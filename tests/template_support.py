"""The template tests' shared view of the stack: template.yaml with its nested applications
(templates/*.yaml) read as the one template CloudFormation deploys (maas.template.load_stack), its
SAM translation, and the helpers the tests by concern (tests/unit/test_template*.py) share."""

from __future__ import annotations

import ast
import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from maas import template_check
from maas.template import load_stack, stack_files

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
# TrainingStateMachine's states (its DefinitionUri).
ASL_FILE = ROOT / "statemachines" / "training.asl.json"
EVENTS = sorted((ROOT / "events").glob("*.json"))
# API Gateway proxy events (ApiFunction) and SQS events carrying S3 notifications (BatchFunction).
API_EVENTS = [p for p in EVENTS if "httpMethod" in json.loads(p.read_text(encoding="utf-8"))]
BATCH_EVENTS = [p for p in EVENTS if p.name.startswith("batch_")]
ALARM_EVENTS = [p for p in EVENTS if "detail-type" in json.loads(p.read_text(encoding="utf-8"))]
API_HANDLER = ROOT / "src" / "functions" / "api" / "app.py"
BATCH_HANDLER = ROOT / "src" / "functions" / "batch" / "app.py"
BUCKET_NAME = "${AWS::StackName}-models-${AWS::AccountId}-${AWS::Region}"


def api_routes(template: dict[str, Any], function: str | None = None) -> set[tuple[str, str]]:
    """(METHOD, path) of every Api event, of every function or of the one named."""
    return {
        (event["Properties"]["Method"].upper(), event["Properties"]["Path"])
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function" and function in (None, logical_id)
        for event in resource["Properties"].get("Events", {}).values()
        if event["Type"] == "Api"
    }


def iam_routes(template: dict[str, Any]) -> set[tuple[str, str]]:
    """Routes whose event asks API Gateway for SigV4-signed IAM credentials (Auth.Authorizer: AWS_IAM)."""
    return {
        (event["Properties"]["Method"].upper(), event["Properties"]["Path"])
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
        for event in resource["Properties"].get("Events", {}).values()
        if event["Type"] == "Api" and event["Properties"].get("Auth", {}).get("Authorizer") == "AWS_IAM"
    }


def swagger(translated: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI 2.0 body SAM generates for the REST API from the functions' Api events."""
    return translated["Resources"]["Api"]["Properties"]["Body"]


_NO_VALUE = object()


def deployed(translated: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any]:
    """What CloudFormation makes of the translated template for these parameter values.

    Only as much as these tests need: conditions decided, Fn::If taken, AWS::NoValue dropped, and
    Refs and Fn::Subs of parameters filled in; everything else is left as it is.
    """
    values = {name: str(spec.get("Default", "")) for name, spec in translated.get("Parameters", {}).items()}
    values.update(parameters)
    conditions = translated.get("Conditions", {})

    def holds(expression: Any) -> bool:
        ((function, argument),) = expression.items()
        if function == "Fn::Not":
            return not holds(argument[0])
        if function == "Fn::Equals":
            return resolve(argument[0]) == resolve(argument[1])
        if function == "Condition":
            return holds(conditions[argument])
        raise AssertionError(f"unexpected {function} in a condition")

    def resolve(node: Any) -> Any:
        if isinstance(node, dict) and len(node) == 1:
            ((function, argument),) = node.items()
            if function == "Ref" and argument == "AWS::NoValue":
                return _NO_VALUE
            if function == "Ref" and argument in values:
                return values[argument]
            if function == "Fn::If":
                name, then, otherwise = argument
                return resolve(then if holds(conditions[name]) else otherwise)
            if function == "Fn::Sub" and isinstance(argument, str):
                names = re.findall(r"\$\{([^}!]+)\}", argument)
                if names and all(name in values for name in names):
                    return re.sub(r"\$\{([^}!]+)\}", lambda m: values[m.group(1)], argument)
        if isinstance(node, dict):
            return {k: v for k, v in ((k, resolve(v)) for k, v in node.items()) if v is not _NO_VALUE}
        if isinstance(node, list):
            return [v for v in (resolve(v) for v in node) if v is not _NO_VALUE]
        return node

    return resolve(translated)


def handler_source(path: Path = API_HANDLER) -> ast.Module:
    if not path.exists():
        pytest.skip(f"{path.relative_to(ROOT)} does not exist yet")
    return ast.parse(path.read_text(encoding="utf-8"))


def environ_reads(tree: ast.Module) -> set[str]:
    """The names a module reads as os.environ["NAME"] (which fails loudly when the template lacks them)."""
    return {
        node.slice.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "environ"
        and isinstance(node.slice, ast.Constant)
    }


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def inline_statements(translated: dict[str, Any], role: str) -> list[dict[str, Any]]:
    policies = translated["Resources"][role]["Properties"].get("Policies", [])
    return [s for policy in policies for s in policy["PolicyDocument"]["Statement"]]


# The statements every function role has besides its own grants (see test_functions_log_only_to_their_own_log_group).
LOGS_AND_TRACES_SIDS = {"WriteOwnLogs", "WriteTraces"}


def bucket_arn(suffix: str = "") -> dict[str, str]:
    return {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{BUCKET_NAME}{suffix}"}


def parked_with_an_alarm(stack: dict[str, Any], queue: str, alarm: str, topic: str) -> None:
    """`queue` is encrypted, and anything in it raises `alarm` (to the topic, when one is given)."""
    resources = stack["Resources"]
    assert resources[queue]["Properties"]["SqsManagedSseEnabled"] is True
    assert resources[queue]["Properties"]["MessageRetentionPeriod"] == 1209600
    props = resources[alarm]["Properties"]
    assert (props["Namespace"], props["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert props["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]
    assert (props["ComparisonOperator"], props["Threshold"], props["Statistic"]) == (
        "GreaterThanThreshold",
        0,
        "Maximum",
    )
    assert props.get("AlarmActions", []) == props.get("OKActions", []) == ([topic] if topic else [])


def only_this_rule_may_send(stack: dict[str, Any], queue: str, rule: str) -> None:
    resources = stack["Resources"]
    assert resources[rule]["Type"] == "AWS::Events::Rule"
    allows = [
        s
        for r in resources.values()
        if r["Type"] == "AWS::SQS::QueuePolicy" and {"Ref": queue} in r["Properties"]["Queues"]
        for s in r["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Allow"
    ]
    assert allows == [
        {
            "Sid": allows[0]["Sid"],
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": {"Fn::GetAtt": [queue, "Arn"]},
            "Condition": {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [rule, "Arn"]}}},
        }
    ]
    (target,) = resources[rule]["Properties"]["Targets"]
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue, "Arn"]}}
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] == 3600


FUNCTIONS = ("ApiFunction", "BatchFunction", "AdminFunction", "CanaryGuardFunction")


def statements_of(translated: dict[str, Any], role: str) -> list[dict[str, Any]]:
    statements = inline_statements(translated, role)
    assert statements, f"{role} has no inline policy"
    return statements


def arns(statement: dict[str, Any]) -> list[Any]:
    return [r["Fn::Sub"] if isinstance(r, dict) and "Fn::Sub" in r else r for r in as_list(statement["Resource"])]


@functools.cache
def _stack() -> dict[str, Any]:
    return json.loads(json.dumps(load_stack(TEMPLATE, template_check.load_template)))


@functools.cache
def _translated() -> dict[str, Any]:
    return template_check.translate(_stack(), root=ROOT)


def stack() -> dict[str, Any]:
    """template.yaml and its nested applications as one template (a copy each test module may change)."""
    return copy.deepcopy(_stack())


def translated_stack() -> dict[str, Any]:
    """`stack()` as SAM translates it: the CloudFormation the whole stack deploys."""
    return copy.deepcopy(_translated())


def arn_of(bucket: str, suffix: str = "") -> dict[str, Any]:
    """A bucket's ARN, or a key pattern in it, as a policy on that bucket names it (from its own Arn)."""
    return {"Fn::Sub": f"${{{bucket}.Arn}}{suffix}"} if suffix else {"Fn::GetAtt": [bucket, "Arn"]}


def copy_stack(tmp_path: Path, change: tuple[str, str] | None = None) -> Path:
    """A copy of the stack (every template and the training ASL file) under `tmp_path`, with
    change = (old, new) made once, in the first file that holds `old` (template.yaml, then its
    nested templates in the order it names them, then the ASL file); returns the copy's template.yaml."""
    pending = change
    for source in [*stack_files(TEMPLATE), ASL_FILE]:
        target = tmp_path / source.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = source.read_text(encoding="utf-8")
        if pending and pending[0] in text:
            text, pending = text.replace(pending[0], pending[1], 1), None
        target.write_text(text, encoding="utf-8")
    assert pending is None, f"{pending and pending[0]!r} is in no file of the stack"
    return tmp_path / TEMPLATE.name


def check_copy(tmp_path: Path, change: tuple[str, str] | None = None) -> int:
    """template_check on a copy of the stack with `change` made (copy_stack)."""
    return template_check.main([str(copy_stack(tmp_path, change))])
