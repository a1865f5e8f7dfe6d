"""template.yaml and events/: what a deployer, a security reviewer and `sam local invoke -e` rely on."""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import subprocess
import sys
from fnmatch import fnmatchcase
from hashlib import md5
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest

from maas import template_check
from maas.template import Template

ROOT = Path(__file__).resolve().parents[2]
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

# What the API handler serves; the events and the README's curl lines use these.
REQUIRED_ROUTES = {
    ("GET", "/health"),
    ("GET", "/models"),
    ("GET", "/models/{name}"),
    ("POST", "/models/{name}/predict"),
    ("GET", "/models/{name}/versions/{version}"),
    ("POST", "/models/{name}/versions/{version}/predict"),
    # Batch jobs for large inputs
    ("POST", "/models/{name}/jobs"),
    ("GET", "/jobs/{job_id}"),
    # Open Inference Protocol (KServe v2)
    ("GET", "/v2"),
    ("GET", "/v2/health/live"),
    ("GET", "/v2/health/ready"),
    ("GET", "/v2/models/{name}"),
    ("GET", "/v2/models/{name}/versions/{version}"),
    ("GET", "/v2/models/{name}/ready"),
    ("GET", "/v2/models/{name}/versions/{version}/ready"),
    ("POST", "/v2/models/{name}/infer"),
    ("POST", "/v2/models/{name}/versions/{version}/infer"),
    # The API's own description
    ("GET", "/openapi.json"),
    ("GET", "/swagger"),
}
# Health probes and docs carry no API key; every other route, present or future, needs one.
OPEN_ROUTES = {
    ("GET", "/health"),
    ("GET", "/v2"),
    ("GET", "/v2/health/live"),
    ("GET", "/v2/health/ready"),
    ("GET", "/openapi.json"),
    ("GET", "/swagger"),
}
API_KEY_SECURITY = [{"api_key": []}]
# The routes that write with the API key alone: inference and batch job creation.
DATA_WRITES = {route for route in REQUIRED_ROUTES if route[0] == "POST"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return json.loads(json.dumps(template_check.load_template(TEMPLATE)))


@pytest.fixture(scope="module")
def translated(template: dict[str, Any]) -> dict[str, Any]:
    return template_check.translate(template, root=ROOT)


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
_LOGS_AND_TRACES_SIDS = {"WriteOwnLogs", "WriteTraces"}


def bucket_arn(suffix: str = "") -> dict[str, str]:
    return {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{BUCKET_NAME}{suffix}"}


# --- the template is valid CloudFormation once SAM has expanded it ---------------------------------


def test_translated_template_passes_cfn_lint() -> None:
    findings = template_check.check(TEMPLATE)
    assert findings == [], "\n".join(f"[{m.rule.id}] {m.message}" for m in findings)


def _check_copy(tmp_path: Path, template: str | None = None, asl: str | None = None) -> int:
    """template_check on a copy of the template and its training ASL file, either replaced by the text given."""
    (tmp_path / "statemachines").mkdir()
    (tmp_path / "template.yaml").write_text(template or TEMPLATE.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "statemachines" / ASL_FILE.name).write_text(
        asl or ASL_FILE.read_text(encoding="utf-8"), encoding="utf-8"
    )
    return template_check.main([str(tmp_path / "template.yaml")])


def test_template_check_fails_on_an_error_in_the_translated_template(tmp_path: Path) -> None:
    broken = TEMPLATE.read_text(encoding="utf-8").replace("RetentionInDays: 90", "RetentionInDays: 91")
    assert broken != TEMPLATE.read_text(encoding="utf-8")
    assert _check_copy(tmp_path, template=broken) == 1
    assert template_check.main([str(TEMPLATE)]) == 0


def test_sam_validate_lint_passes() -> None:
    sam = Path(sys.executable).with_name("sam")
    if not sam.exists():
        pytest.skip(f"aws-sam-cli is not installed next to {sys.executable} (pip install -e '.[dev]')")
    # No AWS account is needed; fake credentials and a region keep sam from looking for one.
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SAM_CLI_TELEMETRY": "0",
    }
    result = subprocess.run(
        [str(sam), "validate", "--lint", "--template-file", str(TEMPLATE), "--region", "us-east-1"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the model bucket ------------------------------------------------------------------------------


def test_model_bucket_is_private_encrypted_versioned_and_kept(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["ModelBucket"]
    props = bucket["Properties"]
    assert props["BucketName"] == {"Fn::Sub": BUCKET_NAME}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    (encryption,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms", "aws:kms:dsse"}
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = props["LifecycleConfiguration"]["Rules"]
    assert any(r["Status"] == "Enabled" and "NoncurrentVersionExpiration" in r for r in rules)
    # Trained models cost GPU hours: neither a stack delete nor a replacement may drop them.
    assert bucket["DeletionPolicy"] == "Retain"
    assert bucket["UpdateReplacePolicy"] == "Retain"


def test_model_bucket_policy_refuses_plain_http(template: dict[str, Any]) -> None:
    policy = template["Resources"]["ModelBucketPolicy"]["Properties"]
    assert policy["Bucket"] == {"Ref": "ModelBucket"}
    denies = [
        s
        for s in policy["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert denies, "no statement denies requests made without TLS"
    (deny,) = denies
    assert deny["Principal"] == "*"
    assert deny["Action"] in ("s3:*", ["s3:*"])
    # Both the bucket and its objects, or ListBucket over HTTP would still be allowed.
    assert {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{BUCKET_NAME}"} in deny["Resource"]
    assert {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{BUCKET_NAME}/*"} in deny["Resource"]


# --- security: least privilege, private buckets, access logs, and what checkov may skip ------------

# Resource "*" only where IAM offers nothing narrower for the action, and why.
WILDCARD_RESOURCE_ACTIONS = {
    "xray:PutTraceSegments": "active tracing; X-Ray has no resource-level permissions",
    "xray:PutTelemetryRecords": "active tracing; X-Ray has no resource-level permissions",
    "xray:GetSamplingRules": "Step Functions tracing; X-Ray has no resource-level permissions",
    "xray:GetSamplingTargets": "Step Functions tracing; X-Ray has no resource-level permissions",
    "ecr:GetAuthorizationToken": "the ECR login token is not tied to a repository",
    "cloudwatch:PutMetricData": "metrics have no ARN; held to the training namespace by a condition",
}
_IDENTITY_POLICIES = {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}
_RESOURCE_POLICIES = {"AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy"}

# Every check checkov is told to skip, by resource; each skip's reason is its comment in template.yaml
# (and README.md's Security section). A new skip is a security decision: add it here on purpose.
CHECKOV_SKIPS = {
    "AccessLogBucket": {"CKV_AWS_18"},  # the access-log bucket does not log into itself
    "BatchDeadLetterQueue": {"CKV_AWS_27"},  # SSE-SQS, which the check does not recognise
    "BatchQueue": {"CKV_AWS_27"},
    "CanaryGuardDeadLetterQueue": {"CKV_AWS_27"},
    "TrainingStartDeadLetterQueue": {"CKV_AWS_27"},
    "Api": {"CKV_AWS_120"},  # no stage cache
    "ApiAccessLogGroup": {"CKV_AWS_158"},  # CloudWatch Logs' own encryption, no customer KMS key
    "ApiFunctionLogGroup": {"CKV_AWS_158"},
    "BatchFunctionLogGroup": {"CKV_AWS_158"},
    # no function DLQ (synchronous invokes), no reserved concurrency, no VPC, no customer key for env
    "ApiFunction": {"CKV_AWS_116", "CKV_AWS_115", "CKV_AWS_117", "CKV_AWS_173"},
    "BatchFunction": {"CKV_AWS_116", "CKV_AWS_115", "CKV_AWS_117", "CKV_AWS_173"},
    "AdminFunction": {"CKV_AWS_116", "CKV_AWS_115", "CKV_AWS_117", "CKV_AWS_173"},
    "CanaryGuardFunction": {"CKV_AWS_116", "CKV_AWS_115", "CKV_AWS_117", "CKV_AWS_173"},
    "AdminFunctionLogGroup": {"CKV_AWS_158"},
    "CanaryGuardFunctionLogGroup": {"CKV_AWS_158"},
}
CHECKOV = ROOT / ".venv-tools" / "bin" / "checkov"


def policy_statements(translated: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every statement of every identity and resource policy in the stack, with the resource holding it."""
    found = []
    for logical_id, resource in translated["Resources"].items():
        props = resource.get("Properties", {})
        documents = []
        if resource["Type"] == "AWS::IAM::Role":
            documents = [policy["PolicyDocument"] for policy in props.get("Policies", [])]
        elif resource["Type"] in _IDENTITY_POLICIES | _RESOURCE_POLICIES:
            documents = [props["PolicyDocument"]]
        found += [(logical_id, statement) for document in documents for statement in as_list(document["Statement"])]
    return found


def test_no_policy_allows_a_wildcard_action_or_a_wildcard_resource_iam_does_not_force(
    translated: dict[str, Any],
) -> None:
    statements = policy_statements(translated)
    assert len(statements) > 20, "found too few policy statements: is the walk missing some?"
    wildcard_resources = set()
    for holder, statement in statements:
        assert "NotAction" not in statement and "NotResource" not in statement, f"{holder}: {statement}"
        if statement["Effect"] == "Deny":  # "s3:*" / "sqs:*" denials only take away (plain HTTP)
            continue
        actions = as_list(statement["Action"])
        for action in actions:
            assert "*" not in action, f"{holder}: wildcard action {action!r}"
        assert statement.get("Principal") != "*", f"{holder}: allows anyone"
        if "*" in as_list(statement.get("Resource")):
            unforced = set(actions) - set(WILDCARD_RESOURCE_ACTIONS)
            assert not unforced, f"{holder}: Resource '*' for {sorted(unforced)}, which take a narrower resource"
            wildcard_resources.update(actions)
    assert wildcard_resources <= set(WILDCARD_RESOURCE_ACTIONS)


def test_no_role_holds_managed_policies(translated: dict[str, Any]) -> None:
    # What a role may do is all in the template, where the test above reads it: AWS managed policies
    # (AWSLambdaBasicExecutionRole, AWSLambdaSQSQueueExecutionRole, ...) grant on "*".
    roles = {k: r["Properties"] for k, r in translated["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    assert {"ApiFunctionRole", "BatchFunctionRole", "TrainingJobRole", "TrainingStateMachineRole"} <= set(roles)
    for logical_id, role in roles.items():
        assert role.get("ManagedPolicyArns", []) == [], f"{logical_id}: {role['ManagedPolicyArns']}"


@pytest.mark.parametrize("function", ["ApiFunction", "BatchFunction"])
def test_functions_log_only_to_their_own_log_group(translated: dict[str, Any], function: str) -> None:
    resources = translated["Resources"]
    props = resources[function]["Properties"]
    assert props["Role"] == {"Fn::GetAtt": [f"{function}Role", "Arn"]}
    # The stack names and creates the group; the function's role can then name it without a cycle.
    assert props["LoggingConfig"] == {"LogGroup": {"Ref": f"{function}LogGroup"}}
    group = resources[f"{function}LogGroup"]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{AWS::StackName}}-{function}"}
    assert props["TracingConfig"] == {"Mode": "Active"}
    statements = inline_statements(translated, f"{function}Role")
    by_sid = {s.get("Sid"): s for s in statements}
    logs = by_sid["WriteOwnLogs"]
    assert sorted(as_list(logs["Action"])) == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert logs["Resource"] == {"Fn::GetAtt": [f"{function}LogGroup", "Arn"]}
    traces = by_sid["WriteTraces"]
    assert sorted(as_list(traces["Action"])) == ["xray:PutTelemetryRecords", "xray:PutTraceSegments"]
    # No other logs grant, and no logs:CreateLogGroup at all: the group exists before the function.
    assert [s for s in statements if any(a.startswith("logs:") for a in as_list(s["Action"]))] == [logs]
    trust = resources[f"{function}Role"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "lambda.amazonaws.com"}]


def test_every_bucket_is_private_encrypted_versioned_tls_only_and_expiring(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    buckets = {k: r for k, r in resources.items() if r["Type"] == "AWS::S3::Bucket"}
    assert set(buckets) == {"ModelBucket", "AccessLogBucket"}
    policies = {
        r["Properties"]["Bucket"]["Ref"]: r["Properties"]["PolicyDocument"]
        for r in resources.values()
        if r["Type"] == "AWS::S3::BucketPolicy"
    }
    for logical_id, bucket in buckets.items():
        props = bucket["Properties"]
        assert all(props["PublicAccessBlockConfiguration"][k] is True for k in _PUBLIC_ACCESS_BLOCK), logical_id
        assert set(props["PublicAccessBlockConfiguration"]) == set(_PUBLIC_ACCESS_BLOCK)
        assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}], logical_id
        (encryption,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms", "aws:kms:dsse"}
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}, logical_id
        rules = props["LifecycleConfiguration"]["Rules"]
        assert any(r["Status"] == "Enabled" and "NoncurrentVersionExpiration" in r for r in rules), logical_id
        assert any(r["Status"] == "Enabled" and "AbortIncompleteMultipartUpload" in r for r in rules), logical_id
        assert bucket["DeletionPolicy"] == bucket["UpdateReplacePolicy"] == "Retain", logical_id
        # Refuses plain HTTP on the bucket and on its objects, naming both by the name string.
        name = props["BucketName"]["Fn::Sub"]
        (deny,) = [s for s in policies[logical_id]["Statement"] if s["Effect"] == "Deny"]
        assert deny["Principal"] == "*" and as_list(deny["Action"]) == ["s3:*"]
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert sorted(r["Fn::Sub"] for r in deny["Resource"]) == [
            f"arn:${{AWS::Partition}}:s3:::{name}",
            f"arn:${{AWS::Partition}}:s3:::{name}/*",
        ]


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


_PUBLIC_ACCESS_BLOCK = ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
LOG_BUCKET_NAME = "${AWS::StackName}-logs-${AWS::AccountId}-${AWS::Region}"


def test_model_bucket_access_logs_go_to_the_log_bucket_and_only_there(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    model = resources["ModelBucket"]
    logging = model["Properties"]["LoggingConfiguration"]
    assert logging["DestinationBucketName"] == {"Ref": "AccessLogBucket"}
    prefix = logging["LogFilePrefix"]
    assert prefix == "model-bucket/"
    assert logging["TargetObjectKeyFormat"] == {"PartitionedPrefix": {"PartitionDateSource": "EventTime"}}
    # The grant to S3's log delivery exists before the model bucket starts logging.
    assert "AccessLogBucketPolicy" in as_list(model["DependsOn"])

    logs = resources["AccessLogBucket"]["Properties"]
    assert logs["BucketName"] == {"Fn::Sub": LOG_BUCKET_NAME}
    # S3 server access logging delivers only into SSE-S3 buckets.
    (encryption,) = logs["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert any(
        r["Status"] == "Enabled" and r.get("ExpirationInDays", 0) > 0 for r in logs["LifecycleConfiguration"]["Rules"]
    )
    assert "LoggingConfiguration" not in logs

    policy = resources["AccessLogBucketPolicy"]["Properties"]
    assert policy["Bucket"] == {"Ref": "AccessLogBucket"}
    (allow,) = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert as_list(allow["Action"]) == ["s3:PutObject"]
    assert as_list(allow["Resource"]) == [{"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{LOG_BUCKET_NAME}/{prefix}*"}]
    # Only this stack's model bucket, in this account: by name string (the model bucket depends on this).
    assert allow["Condition"] == {
        "ArnLike": {"aws:SourceArn": bucket_arn()},
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
    }
    assert '"Ref": "ModelBucket"' not in json.dumps(policy) and '["ModelBucket",' not in json.dumps(policy)


def test_api_stage_writes_access_logs_without_the_key(translated: dict[str, Any]) -> None:
    resources = translated["Resources"]
    (stage,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::ApiGateway::Stage"]
    setting = stage["AccessLogSetting"]
    assert setting["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    fields = json.loads(setting["Format"])  # one JSON object per request
    assert {"requestId", "ip", "caller", "apiKeyId", "httpMethod", "resourcePath", "status"} <= set(fields)
    # The key's id says whose request it was; the key itself never reaches a log.
    assert "$context.identity.apiKey" not in fields.values()
    assert resources["ApiAccessLogGroup"]["Properties"]["RetentionInDays"] > 0
    # Access logging needs the region's API Gateway CloudWatch role set before the stage is made.
    assert resources["Api"]["DependsOn"] in ("ApiGatewayAccount", ["ApiGatewayAccount"])
    account = resources["ApiGatewayAccount"]
    assert account["Properties"]["CloudWatchRoleArn"] == {
        "Fn::If": [
            "CreateApiGatewayCloudWatchRole",
            {"Fn::GetAtt": ["ApiGatewayCloudWatchRole", "Arn"]},
            {"Ref": "ApiGatewayCloudWatchRoleArn"},
        ]
    }
    role = resources["ApiGatewayCloudWatchRole"]
    assert role["Condition"] == "CreateApiGatewayCloudWatchRole"
    # Other APIs of the region may log through it: the role and the setting outlive the stack.
    assert role["DeletionPolicy"] == account["DeletionPolicy"] == "Retain"
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "apigateway.amazonaws.com"}
    for statement in inline_statements(translated, "ApiGatewayCloudWatchRole"):
        assert all(action.startswith("logs:") for action in as_list(statement["Action"]))
        assert _arns(statement) == ["arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:*"]


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


def _parked_with_an_alarm(stack: dict[str, Any], queue: str, alarm: str, topic: str) -> None:
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


def _only_this_rule_may_send(stack: dict[str, Any], queue: str, rule: str) -> None:
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
    _only_this_rule_may_send(stack, "CanaryGuardDeadLetterQueue", "CanaryGuardFunctionCanaryAlarm")
    assert resources["CanaryGuardFunctionCanaryAlarm"]["Properties"]["EventPattern"]["source"] == ["aws.cloudwatch"]
    _parked_with_an_alarm(stack, "CanaryGuardDeadLetterQueue", "CanaryGuardFailedAlarm", topic)


@pytest.mark.parametrize("topic", ["", "arn:aws:sns:us-east-1:123456789012:on-call"], ids=["no-topic", "topic"])
def test_a_start_file_that_started_no_training_is_parked_and_raises_an_alarm(
    template: dict[str, Any], topic: str
) -> None:
    stack = deployed(template_check.translate(template, root=ROOT), {"AlarmTopicArn": topic})
    _only_this_rule_may_send(stack, "TrainingStartDeadLetterQueue", "TrainingStateMachineStartFile")
    rule = stack["Resources"]["TrainingStateMachineStartFile"]["Properties"]
    assert rule["Targets"][0]["Arn"] == {"Ref": "TrainingStateMachine"}
    _parked_with_an_alarm(stack, "TrainingStartDeadLetterQueue", "TrainingStartFailedAlarm", topic)


def test_training_executions_are_traced_without_a_managed_policy(translated: dict[str, Any]) -> None:
    machine = translated["Resources"]["TrainingStateMachine"]["Properties"]
    assert machine["TracingConfiguration"] == {"Enabled": True}
    assert machine["RoleArn"] == {"Fn::GetAtt": ["TrainingStateMachineRole", "Arn"]}


FUNCTIONS = ("ApiFunction", "BatchFunction", "AdminFunction", "CanaryGuardFunction")


@pytest.mark.parametrize("days", ["7", "365"])
def test_every_function_keeps_its_logs_for_the_retention_parameter(template: dict[str, Any], days: str) -> None:
    stack = deployed(template_check.translate(template, root=ROOT), {"LogRetentionDays": days})
    resources = stack["Resources"]
    functions = [k for k, r in resources.items() if r["Type"] == "AWS::Lambda::Function"]
    assert sorted(functions) == sorted(FUNCTIONS)
    for function in functions:
        group = resources[function]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert resources[group]["Type"] == "AWS::Logs::LogGroup"
        assert resources[group]["Properties"]["RetentionInDays"] == days, function
    parameter = template["Parameters"]["LogRetentionDays"]
    assert parameter["Default"] == 30 and 30 in parameter["AllowedValues"] and 0 not in parameter["AllowedValues"]


# Every check of cfn-lint's (and the serverless rules') that a resource skips, and why, in a word;
# the reasons are the skips' comments in template.yaml. A new skip is a decision: add it here on purpose.
CFN_LINT_SKIPS = {
    # Each logs to its own group (LoggingConfig) with a retention; the rule only knows /aws/lambda/<name>.
    **{function: {"WS1004"} for function in FUNCTIONS},
    # An SQS event source takes no on-failure destination; BatchQueue's redrive is the function's DLQ.
    "BatchFunction": {"WS1004", "ES1001"},
    # Dead-letter queues themselves: a redrive would only move failures further.
    "BatchDeadLetterQueue": {"ES6000"},
    "CanaryGuardDeadLetterQueue": {"ES6000"},
    "TrainingStartDeadLetterQueue": {"ES6000"},
}


def test_every_cfn_lint_skip_is_reviewed_and_says_why(template: dict[str, Any]) -> None:
    skips: dict[str, set[str]] = {}
    for logical_id, resource in template["Resources"].items():
        config = resource.get("Metadata", {}).get("cfn-lint", {})
        ignored = set(config.get("config", {}).get("ignore_checks", []))
        if not ignored:
            continue
        assert set(config.get("comments", {})) == ignored, f"{logical_id}: one comment per skipped check"
        for check, comment in config["comments"].items():
            assert len(comment.split()) >= 10, f"{logical_id} {check}: say why"
        skips[logical_id] = ignored
    assert skips == CFN_LINT_SKIPS


@pytest.mark.parametrize(
    ("change", "finding"),
    [
        # Step Functions tracing off
        (("        Enabled: true\n", "        Enabled: false\n"), "[WS5000]"),
        # a function's log retention skip dropped: the rule itself still runs
        (("            - WS1004\n", "            - W9999\n"), "[WS1004]"),
        # the canary alarm rule's dead-letter queue dropped
        (
            ("            DeadLetterConfig:\n              Arn: !GetAtt CanaryGuardDeadLetterQueue.Arn\n", ""),
            "[ES4000]",
        ),
    ],
    ids=["tracing", "log-retention", "rule-dlq"],
)
def test_template_check_runs_the_serverless_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: tuple[str, str], finding: str
) -> None:
    text = TEMPLATE.read_text(encoding="utf-8")
    assert change[0] in text
    assert _check_copy(tmp_path, template=text.replace(change[0], change[1], 1)) == 1
    assert finding in capsys.readouterr().out


def test_every_checkov_skip_is_reviewed_and_says_why(template: dict[str, Any]) -> None:
    skips: dict[str, set[str]] = {}
    for logical_id, resource in template["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), skip
            assert len(skip.get("comment", "").split()) >= 10, f"{logical_id} {skip['id']}: say why"
            skips.setdefault(logical_id, set()).add(skip["id"])
    assert skips == CHECKOV_SKIPS


def test_template_check_output_carries_the_api_skips_to_its_stage(template: dict[str, Any], tmp_path: Path) -> None:
    output = tmp_path / "out" / "translated.json"
    assert template_check.main([str(TEMPLATE), "--output", str(output)]) == 0
    written = json.loads(output.read_text(encoding="utf-8"))["Resources"]
    skips = template["Resources"]["Api"]["Metadata"]["checkov"]
    (stage,) = [r for r in written.values() if r["Type"] == "AWS::ApiGateway::Stage"]
    assert stage["Metadata"] == {"checkov": skips}
    # SAM itself copies a resource's Metadata to the resource named after it.
    assert written["Api"]["Metadata"]["checkov"] == skips
    assert written["BatchFunction"]["Metadata"] == template["Resources"]["BatchFunction"]["Metadata"]
    # A function's cfn-lint skips reach the event source mapping SAM makes from its SQS event.
    (mapping,) = [r for r in written.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert mapping["Metadata"] == {"cfn-lint": template["Resources"]["BatchFunction"]["Metadata"]["cfn-lint"]}


def _checkov(path: Path) -> dict[str, Any]:
    result = subprocess.run(
        [str(CHECKOV), "--framework", "cloudformation", "--skip-download", "-o", "json", "-f", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_checkov_fails_no_check_on_the_template_or_its_translation(tmp_path: Path) -> None:
    if not CHECKOV.exists():
        pytest.skip("checkov is not installed (make .venv-tools/.installed)")
    translated = tmp_path / "translated.json"
    assert template_check.main([str(TEMPLATE), "--output", str(translated)]) == 0
    for path in (TEMPLATE, translated):
        report = _checkov(path)
        failed = [(c["resource"], c["check_id"]) for c in report["results"]["failed_checks"]]
        assert failed == [], f"{path.name}: {failed}"
        skipped = {c["check_id"] for c in report["results"]["skipped_checks"]}
        assert skipped <= set().union(*CHECKOV_SKIPS.values()), f"{path.name}: {skipped}"


# --- the API function ------------------------------------------------------------------------------


def test_api_function_reads_models_and_writes_only_job_objects(translated: dict[str, Any]) -> None:
    role = translated["Resources"]["ApiFunctionRole"]["Properties"]
    statements = [s for policy in role.get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]
    assert statements, "ApiFunction has no inline policy: it could not read the registry"
    # Its logs and traces: checked with BatchFunction's in test_functions_log_only_to_their_own_log_group.
    statements = [s for s in statements if s.get("Sid") not in _LOGS_AND_TRACES_SIDS]
    actions: set[str] = set()
    for statement in statements:
        assert statement["Effect"] == "Allow"
        action = statement["Action"]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        actions.update([action] if isinstance(action, str) else action)
        for resource in resources:
            arn = resource["Fn::Sub"] if isinstance(resource, dict) else resource
            assert arn != "*" and ":::*" not in arn, f"unbounded resource {arn!r}"
            assert arn.startswith(f"arn:${{AWS::Partition}}:s3:::{BUCKET_NAME}"), f"not the model bucket: {arn!r}"
        suffixes = {r["Fn::Sub"].removeprefix(f"arn:${{AWS::Partition}}:s3:::{BUCKET_NAME}") for r in resources}
        if action == "s3:GetObject":
            assert suffixes <= {"/models/*", "/batch/jobs/*", "/batch/in/*", "/batch/out/*"}
        if action == "s3:PutObject":  # never models/: the API cannot publish or change a model
            assert suffixes <= {"/batch/jobs/*", "/batch/in/*"}
        if action == "s3:ListBucket":
            assert statement["Condition"] == {"StringLike": {"s3:prefix": "models/*"}}
    assert actions == {"s3:GetObject", "s3:PutObject", "s3:ListBucket"}
    # Its own role: SAM's generated one would add managed policies granting logs and X-Ray on "*".
    assert translated["Resources"]["ApiFunction"]["Properties"]["Role"] == {"Fn::GetAtt": ["ApiFunctionRole", "Arn"]}
    assert role.get("ManagedPolicyArns", []) == []


def test_api_function_reaches_the_bucket_by_name_not_by_ref(template: dict[str, Any]) -> None:
    # A Ref/GetAtt to the bucket from the function becomes a cycle once the bucket notifies a function.
    function = json.dumps(template["Resources"]["ApiFunction"])
    assert '"Ref": "ModelBucket"' not in function and "ModelBucket.Arn" not in function
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["MODEL_BUCKET"] == {"Fn::Sub": BUCKET_NAME}


def test_every_route_the_handler_serves_is_in_the_template(template: dict[str, Any]) -> None:
    routes = api_routes(template)
    assert routes >= REQUIRED_ROUTES
    handler_routes: set[tuple[str, str]] = set()
    for node in ast.walk(handler_source()):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            owner, method, path = node.func.value, node.func.attr, node.args[0]
            is_app = isinstance(owner, ast.Name) and owner.id == "app"
            is_route = method in {"get", "post", "put", "delete", "patch"}
            if is_app and is_route and isinstance(path, ast.Constant) and isinstance(path.value, str):
                handler_routes.add((method.upper(), re.sub(r"<(\w+)>", r"{\1}", path.value)))
    assert handler_routes, "found no @app.<method>(path) route in the handler"
    assert handler_routes <= routes, f"routes the API Gateway would not forward: {handler_routes - routes}"


# --- API keys and the usage plan -------------------------------------------------------------------


def test_every_route_but_health_and_docs_needs_an_api_key(template: dict[str, Any], translated: dict[str, Any]) -> None:
    routes = api_routes(template)
    assert routes >= OPEN_ROUTES
    opted_out = {
        (event["Properties"]["Method"].upper(), event["Properties"]["Path"])
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
        for event in resource["Properties"].get("Events", {}).values()
        if event["Type"] == "Api" and event["Properties"].get("Auth", {}).get("ApiKeyRequired") is False
    }
    iam = iam_routes(template)
    assert opted_out - iam == OPEN_ROUTES, "only health, docs and IAM-signed routes may opt out of the API key"

    body = swagger(translated)
    assert body["securityDefinitions"]["api_key"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}
    assert body.get("x-amazon-apigateway-api-key-source", "HEADER") == "HEADER"
    assert "security" not in body, "a document-wide requirement would reach the open routes too"
    for method, path in routes:
        security = body["paths"][path][method.lower()].get("security", [])
        if (method, path) in OPEN_ROUTES:
            assert security == [], f"{method} {path} should be open"
        elif (method, path) in iam:  # admin routes: SigV4-signed, with or without the key too
            assert {"AWS_IAM": []} in security, f"{method} {path}: {security}"
        else:
            assert security == API_KEY_SECURITY, f"{method} {path} does not require the API key"
    # Browsers send CORS preflights without the key: an OPTIONS method that required one would fail them.
    for path, methods in body["paths"].items():
        if "options" in methods:
            assert methods["options"].get("security", []) == [], f"OPTIONS {path} requires the API key"


def test_admin_routes_need_iam_auth(template: dict[str, Any], translated: dict[str, Any]) -> None:
    # Reads, inference and job creation take the API key. A route that changes anything else (promote,
    # rollback, publish: the admin routes) must be signed with IAM credentials, which a leaked API key
    # is not.
    routes = api_routes(template)
    admin = {(m, p) for m, p in routes if m != "GET" and (m, p) not in DATA_WRITES}
    # Every route of the function that may write the registry, reads of aliases and history included.
    admin |= api_routes(template, "AdminFunction")
    iam = iam_routes(template)
    assert admin <= iam, f"admin routes without Auth: {{Authorizer: AWS_IAM}}: {sorted(admin - iam)}"
    body = swagger(translated)
    for method, path in iam:
        assert {"AWS_IAM": []} in body["paths"][path][method.lower()]["security"], (method, path)
        assert body["securityDefinitions"]["AWS_IAM"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    # IAM per admin route, never API-wide: a DefaultAuthorizer would lock the API-key clients out.
    assert "DefaultAuthorizer" not in template["Resources"]["Api"]["Properties"]["Auth"]


def test_usage_plan_caps_and_throttles_the_api_key_on_the_stage(translated: dict[str, Any]) -> None:
    resources = translated["Resources"]

    def of_type(kind: str) -> list[str]:
        return [logical_id for logical_id, r in resources.items() if r["Type"] == kind]

    (stage,) = of_type("AWS::ApiGateway::Stage")
    assert resources[stage]["Properties"]["RestApiId"] == {"Ref": "Api"}
    (plan_id,) = of_type("AWS::ApiGateway::UsagePlan")
    plan = resources[plan_id]["Properties"]
    assert plan["ApiStages"] == [{"ApiId": {"Ref": "Api"}, "Stage": {"Ref": stage}}]
    # Refs, not values: the deployer's parameters must reach the plan (SAM's own UsagePlan bakes in defaults).
    assert plan["Quota"] == {"Limit": {"Ref": "ApiQuotaPerDay"}, "Period": "DAY"}
    assert plan["Throttle"] == {"BurstLimit": {"Ref": "ApiBurstLimit"}, "RateLimit": {"Ref": "ApiRateLimit"}}

    (key_id,) = of_type("AWS::ApiGateway::ApiKey")
    assert resources[key_id]["Properties"]["Enabled"] is True
    assert "Value" not in resources[key_id]["Properties"], "a key value in the template is a secret in git"
    (link,) = of_type("AWS::ApiGateway::UsagePlanKey")
    assert resources[link]["Properties"] == {
        "KeyId": {"Ref": key_id},
        "KeyType": "API_KEY",
        "UsagePlanId": {"Ref": plan_id},
    }

    output = translated["Outputs"]["ApiKeyId"]
    assert output["Value"] == {"Ref": key_id}
    assert "get-api-key" in output["Description"] and "--include-value" in output["Description"]

    # A key allowed more than the whole stage would be capped by the stage anyway.
    parameters = translated["Parameters"]
    (stage_throttle,) = [s for s in resources[stage]["Properties"]["MethodSettings"] if s["ResourcePath"] == "/*"]
    assert parameters["ApiRateLimit"]["Default"] <= stage_throttle["ThrottlingRateLimit"]
    assert parameters["ApiBurstLimit"]["Default"] <= stage_throttle["ThrottlingBurstLimit"]
    assert parameters["ApiRateLimit"]["Default"] <= parameters["ApiBurstLimit"]["Default"]


def test_the_open_routes_are_throttled_apart_so_they_cannot_starve_the_keyed_ones(translated: dict[str, Any]) -> None:
    """Health and docs need no key, so no usage plan holds them: each has its own low stage throttle."""
    (stage,) = [r["Properties"] for r in translated["Resources"].values() if r["Type"] == "AWS::ApiGateway::Stage"]
    settings = {
        # MethodSettings write each "/" of a resource path as "~1" after the leading one.
        (
            s["HttpMethod"],
            s["ResourcePath"] if s["ResourcePath"] == "/*" else s["ResourcePath"][1:].replace("~1", "/"),
        ): s
        for s in stage["MethodSettings"]
    }
    every_method = settings.pop(("*", "/*"))
    # Exactly the open routes, each under the API's real resource path (a typo would throttle nothing).
    assert set(settings) == OPEN_ROUTES
    served = {(method.upper(), path) for path, item in swagger(translated)["paths"].items() for method in item}
    assert served >= OPEN_ROUTES
    for route, setting in settings.items():
        assert setting["ThrottlingRateLimit"] <= 5 and setting["ThrottlingBurstLimit"] <= 10, route
        assert setting["MetricsEnabled"] is True
    # All of them at once stay well under what the keyed routes may use.
    open_rate = sum(s["ThrottlingRateLimit"] for s in settings.values())
    assert open_rate <= every_method["ThrottlingRateLimit"]


# --- CORS ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("origin", ["", "https://app.example.com"], ids=["off", "on"])
def test_cors_headers_follow_the_allow_origin_parameter(template: dict[str, Any], origin: str) -> None:
    stack = deployed(
        template_check.translate(template, parameters={"CorsAllowOrigin": origin}), {"CorsAllowOrigin": origin}
    )
    body = swagger(stack)
    preflights = {path: methods["options"] for path, methods in body["paths"].items() if "options" in methods}
    assert set(preflights) == set(body["paths"]), "a path without a preflight cannot be called from a browser"
    answers = [
        op["x-amazon-apigateway-integration"]["responses"]["default"]["responseParameters"]
        for op in preflights.values()
    ]
    refusals = [r.get("responseParameters", {}) for r in body.get("x-amazon-apigateway-gateway-responses", {}).values()]
    assert refusals, "API Gateway's own 4xx/5xx (missing key, throttled) need the CORS header too"
    origins = [a.get("method.response.header.Access-Control-Allow-Origin") for a in answers]
    origins += [r.get("gatewayresponse.header.Access-Control-Allow-Origin") for r in refusals]
    function_env = stack["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert function_env["CORS_ALLOW_ORIGIN"] == origin
    if origin:
        assert set(origins) == {f"'{origin}'"}
        for answer in answers:
            allowed = answer["method.response.header.Access-Control-Allow-Headers"].strip("'").lower().split(",")
            assert {"content-type", "x-api-key"} <= set(allowed)
    else:
        assert set(origins) == {None}, "CORS is off by default: no Access-Control-Allow-Origin anywhere"


def test_cors_origin_parameter_refuses_values_that_would_break_the_header(template: dict[str, Any]) -> None:
    spec = template["Parameters"]["CorsAllowOrigin"]
    assert spec["Default"] == ""
    pattern = re.compile(spec["AllowedPattern"])
    for good in ("", "*", "https://app.example.com", "http://localhost:3000"):
        assert pattern.fullmatch(good), good
    # A quote would end the mapping's literal early; a list is not one origin.
    for bad in ("app.example.com", "https://a.example.com'", "https://a.example.com,https://b.example.com", " "):
        assert not pattern.fullmatch(bad), bad


def test_every_setting_the_handler_reads_is_configured(template: dict[str, Any]) -> None:
    configured = set(template["Globals"]["Function"]["Environment"]["Variables"])
    configured |= set(template["Resources"]["ApiFunction"]["Properties"].get("Environment", {}).get("Variables", {}))
    read = environ_reads(handler_source())
    assert read <= configured, f"os.environ[...] with no value in the template: {read - configured}"


def test_globals_match_the_runtime_the_package_is_built_for(template: dict[str, Any]) -> None:
    function = template["Globals"]["Function"]
    assert function["Runtime"] == "python3.12"
    assert function["Architectures"] == [{"Ref": "Architecture"}]
    assert function["Tracing"] == "Active"
    assert function["Timeout"] <= 29, "API Gateway cuts a REST integration off at 29 s"
    assert template["Parameters"]["Architecture"]["AllowedValues"] == ["x86_64", "arm64"]


def test_outputs_name_the_api_url_bucket_and_function(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["ApiUrl"]["Value"]["Fn::Sub"].startswith("https://${Api}.execute-api.")
    assert outputs["ApiUrl"]["Value"]["Fn::Sub"].endswith("/${StageName}/")
    assert {"ModelBucketName", "ApiFunctionArn"} <= set(outputs)


# --- batch scoring: S3 batch/in/ -> BatchQueue -> BatchFunction -> batch/out/ ----------------------


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


def test_every_queue_is_encrypted_and_refuses_plain_http(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    queues = [logical_id for logical_id, r in resources.items() if r["Type"] == "AWS::SQS::Queue"]
    assert set(queues) == {
        "BatchQueue",
        "BatchDeadLetterQueue",
        "CanaryGuardDeadLetterQueue",
        "TrainingStartDeadLetterQueue",
    }
    policies = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::SQS::QueuePolicy"]
    for queue in queues:
        props = resources[queue]["Properties"]
        assert props.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in props, f"{queue} is not encrypted"
        denies = [
            s
            for policy in policies
            if {"Ref": queue} in policy["Queues"]
            for s in policy["PolicyDocument"]["Statement"]
            if s["Effect"] == "Deny"
            and s["Principal"] == "*"
            and as_list(s["Action"]) == ["sqs:*"]
            and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            and {"Fn::GetAtt": [queue, "Arn"]} in as_list(s["Resource"])
        ]
        assert denies, f"{queue} accepts requests made without TLS"


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


def test_nothing_the_bucket_depends_on_refers_to_the_bucket(template: dict[str, Any]) -> None:
    # The bucket -> queue -> policy (-> function) chain becomes a circular dependency if any of
    # them names the bucket by Ref or GetAtt instead of by its name string.
    for logical_id, resource in template["Resources"].items():
        if logical_id in {"ModelBucket", "ModelBucketPolicy"}:
            continue
        text = json.dumps(resource)
        assert '"Ref": "ModelBucket"' not in text and '["ModelBucket",' not in text, logical_id


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
    statements = [s for s in statements if s.get("Sid") not in _LOGS_AND_TRACES_SIDS]
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


# --- events/ ---------------------------------------------------------------------------------------


def test_every_event_is_an_api_or_a_batch_event() -> None:
    assert API_EVENTS and BATCH_EVENTS and ALARM_EVENTS
    assert sorted(API_EVENTS + BATCH_EVENTS + ALARM_EVENTS) == EVENTS, "an event in events/ that no test checks"
    assert len(set(API_EVENTS) | set(BATCH_EVENTS) | set(ALARM_EVENTS)) == len(EVENTS)


def test_there_is_an_event_for_every_route(template: dict[str, Any]) -> None:
    covered = {(e["httpMethod"], e["resource"]) for e in (json.loads(p.read_text()) for p in API_EVENTS)}
    assert covered >= api_routes(template)


@pytest.mark.parametrize("path", API_EVENTS, ids=lambda p: p.name)
def test_event_matches_a_route_of_the_template(path: Path, template: dict[str, Any]) -> None:
    event = json.loads(path.read_text(encoding="utf-8"))
    method, resource = event["httpMethod"], event["resource"]
    assert (method, resource) in api_routes(template), f"{method} {resource} is not a route of template.yaml"
    context = event["requestContext"]
    assert (context["httpMethod"], context["resourcePath"]) == (method, resource)
    assert context["stage"] == template["Parameters"]["StageName"]["Default"]
    assert context["path"] == f"/{context['stage']}{event['path']}"
    assert context["requestId"]
    # The concrete path fills the resource's {placeholders} with exactly the pathParameters.
    pattern = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(resource)) + "$"
    match = re.match(pattern, event["path"])
    assert match, f"{event['path']} does not fit {resource}"
    assert (event["pathParameters"] or {}) == match.groupdict()
    for key in ("multiValueHeaders", "multiValueQueryStringParameters", "queryStringParameters"):
        assert key in event
    if method == "POST":
        assert {k.lower(): v for k, v in event["headers"].items()}["content-type"] == "application/json"
        body = base64.b64decode(event["body"]).decode() if event["isBase64Encoded"] else event["body"]
        # TensorFlow Serving's row ("instances") or columnar ("inputs") form, Open Inference's "inputs",
        # a batch job request or a rollback.
        assert {"instances", "inputs"} & set(json.loads(body)) or resource.endswith(("/jobs", "/rollback"))


def test_the_local_api_sends_every_event_to_its_own_route() -> None:
    # maas.local_api takes the first route that matches, in template order, across every function.
    template = Template(TEMPLATE)
    routes = [route for fn in template.function_ids() for route in template.function(fn).routes]
    for path in API_EVENTS:
        event = json.loads(path.read_text(encoding="utf-8"))
        first = next((r for r in routes if r.match(event["httpMethod"], event["path"]) is not None), None)
        assert first is not None and first.path == event["resource"], f"{path.name} reaches {first and first.path}"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/health\n"), ("POST", "/models/digits/predict\n"), ("GET", "/v2\n"), ("GET", "/openapi.json\n")],
)
def test_a_route_matches_the_whole_path_not_one_with_a_trailing_newline(method: str, path: str) -> None:
    # API Gateway matches the whole path; a regex ending in "$" would also take "/health\n".
    template = Template(TEMPLATE)
    routes = [route for fn in template.function_ids() for route in template.function(fn).routes]
    assert [r.path for r in routes if r.match(method, path.rstrip("\n")) is not None]
    assert [r.path for r in routes if r.match(method, path) is not None] == []


def test_a_newline_in_a_path_parameter_reaches_the_handler_to_refuse() -> None:
    # As on API Gateway, {name} is any one segment: the handler sees the newline and refuses the name.
    (route,) = [r for r in Template(TEMPLATE).function("ApiFunction").routes if r.path == "/models/{name}"]
    assert route.match("GET", "/models/digits\n") == {"name": "digits\n"}


def _body(name: str) -> dict[str, Any]:
    event = json.loads((ROOT / "events" / name).read_text(encoding="utf-8"))
    raw = base64.b64decode(event["body"]).decode() if event["isBase64Encoded"] else event["body"]
    return json.loads(raw)


def test_predict_events_carry_a_real_digit_in_the_shape_the_model_takes() -> None:
    (image,) = _body("predict_digits.json")["instances"]
    assert len(image) == 8 and all(len(row) == 8 and all(len(px) == 1 for px in row) for row in image)
    pixels = [px[0] for row in image for px in row]
    assert all(isinstance(v, float) and 0.0 <= v <= 16.0 for v in pixels)
    assert len(set(pixels)) > 2, "not an image"
    assert _body("predict_digits_base64.json") == _body("predict_digits.json")
    assert _body("predict_unknown_model.json") == _body("predict_digits.json")
    (wrong,) = _body("predict_wrong_shape.json")["instances"]
    assert [[px[0] for px in row] for row in image] == wrong, "the wrong-shape event should differ only in shape"


def test_version_and_open_inference_events_carry_the_same_digit() -> None:
    (image,) = _body("predict_digits.json")["instances"]
    assert _body("predict_digits_version.json") == _body("predict_digits.json")
    assert _body("predict_digits_columnar.json") == {"inputs": {"image": [image]}}
    (tensor,) = _body("v2_infer_digits.json")["inputs"]
    assert tensor == {
        "name": "image",
        "shape": [1, 8, 8, 1],
        "datatype": "FP32",
        "data": [px[0] for row in image for px in row],  # Open Inference sends tensors flat, row-major
    }
    assert _body("v2_infer_digits_version.json") == _body("v2_infer_digits.json")
    # The version events name a well-formed version that the registry does not hold.
    for name in ("predict_digits_version.json", "describe_model_version.json", "v2_infer_digits_version.json"):
        version = json.loads((ROOT / "events" / name).read_text(encoding="utf-8"))["pathParameters"]["version"]
        assert re.fullmatch(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}", version), version


# --- events/ for BatchFunction: SQS messages carrying S3 notifications ------------------------------


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


# --- training: TrainingStateMachine and the roles it uses ------------------------------------------


def _definition(template: dict[str, Any]) -> dict[str, Any]:
    """TrainingStateMachine's ASL as it runs: its DefinitionUri file with its DefinitionSubstitutions applied."""
    return template_check.state_machine_definition(template["Resources"]["TrainingStateMachine"]["Properties"], ROOT)


def _states(template: dict[str, Any]) -> dict[str, Any]:
    return _definition(template)["States"]


def _statements_of(translated: dict[str, Any], role: str) -> list[dict[str, Any]]:
    statements = inline_statements(translated, role)
    assert statements, f"{role} has no inline policy"
    return statements


def _arns(statement: dict[str, Any]) -> list[Any]:
    return [r["Fn::Sub"] if isinstance(r, dict) and "Fn::Sub" in r else r for r in as_list(statement["Resource"])]


def test_training_state_machine_runs_the_job_with_create_training_job_sync(template: dict[str, Any]) -> None:
    machine = template["Resources"]["TrainingStateMachine"]
    assert machine["Type"] == "AWS::Serverless::StateMachine"
    assert machine["Properties"]["Type"] == "STANDARD"  # .sync waits longer than an express machine lives
    assert machine["Properties"]["DefinitionUri"] == ASL_FILE.relative_to(ROOT).as_posix()
    definition = _definition(template)
    states = definition["States"]
    start = states[definition["StartAt"]]
    # Started by hand with the job's input, or by an S3 event for a start file holding that input.
    assert start["Type"] == "Choice" and start["Default"] == "Train"
    (from_s3,) = start["Choices"]
    assert from_s3 == {"Variable": "$.detail.object.key", "IsPresent": True, "Next": "ReadStartFile"}
    read = states["ReadStartFile"]
    assert read["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:states:::aws-sdk:s3:getObject"}
    assert read["ResultSelector"] == {"input.$": "States.StringToJson($.Body)"} and read["Next"] == "Train"
    train = states["Train"]
    assert train["Type"] == "Task"
    assert train["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:states:::sagemaker:createTrainingJob.sync"}
    # The job runs as TrainingJobRole, writing under the model bucket's training-jobs/.
    params = train["Parameters"]
    assert params["RoleArn"] == {"Fn::GetAtt": ["TrainingJobRole", "Arn"]}
    assert params["OutputDataConfig"]["S3OutputPath"] == {"Fn::Sub": f"s3://{BUCKET_NAME}/training-jobs/"}
    # A failed or stopped job fails the task: it must reach a Fail state that carries the reason.
    (catch,) = train["Catch"]
    assert catch["ErrorEquals"] == ["States.ALL"]
    failed = states[catch["Next"]]
    assert failed["Type"] == "Fail" and failed["CausePath"].startswith(catch["ResultPath"])
    choice = states[train["Next"]]
    assert choice["Type"] == "Choice"
    (completed,) = choice["Choices"]
    assert completed["Variable"] == f"{train['ResultPath']}.status" and completed["StringEquals"] == "Completed"
    assert train["ResultSelector"]["status.$"] == "$.TrainingJobStatus"
    assert states[completed["Next"]]["Type"] == "Succeed"
    assert states[choice["Default"]]["Type"] == "Fail"
    # Every state is reachable and every Next names a state.
    nexts = {s.get("Next") for s in states.values()} | {choice["Default"], completed["Next"], catch["Next"]}
    nexts |= {start["Default"], from_s3["Next"]}
    assert nexts - {None} <= set(states) and set(states) - {definition["StartAt"]} <= nexts


def test_every_placeholder_of_the_asl_file_has_a_substitution_and_every_substitution_a_use(
    template: dict[str, Any],
) -> None:
    # A ${Name} with no entry is not filled with the stack's value; an entry with no ${Name} is dead.
    used = set(re.findall(r"\$\{([^}]*)\}", ASL_FILE.read_text(encoding="utf-8")))
    given = set(template["Resources"]["TrainingStateMachine"]["Properties"]["DefinitionSubstitutions"])
    assert used == given, f"placeholders without a substitution: {used - given}; unused: {given - used}"


def test_template_check_refuses_a_placeholder_without_a_substitution(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asl = ASL_FILE.read_text(encoding="utf-8").replace("${TrainingJobRoleArn}", "${TrainingRole}")
    assert _check_copy(tmp_path, asl=asl) == 2
    assert "no DefinitionSubstitutions entry for TrainingRole" in capsys.readouterr().err


def test_the_translated_state_machine_runs_the_asl_file(translated: dict[str, Any]) -> None:
    # What cfn-lint and checkov read: the states themselves, not an S3 address of them.
    machine = translated["Resources"]["TrainingStateMachine"]["Properties"]
    assert "DefinitionS3Location" not in machine
    assert "TrainingNotCompleted" in json.dumps(machine["DefinitionString"])
    # SAM moves the intrinsics of an inline definition to DefinitionSubstitutions of its own.
    substituted = machine["DefinitionSubstitutions"].values()
    assert {"Fn::GetAtt": ["TrainingJobRole", "Arn"]} in substituted
    assert {"Fn::Sub": "arn:${AWS::Partition}:states:::sagemaker:createTrainingJob.sync"} in substituted


def test_a_substitution_inside_a_string_keeps_any_value_cloudformation_resolves(tmp_path: Path) -> None:
    (tmp_path / "m.asl.json").write_text(json.dumps({"A": "x-${J}-${N}", "B": ["${R}"], "C": "${S}"}))
    join = {"Fn::Join": ["-", ["a", {"Ref": "AWS::Region"}]]}
    properties = {
        "DefinitionUri": "m.asl.json",
        "DefinitionSubstitutions": {"J": join, "N": 3, "R": {"Ref": "Bucket"}, "S": "plain"},
    }
    assert template_check.state_machine_definition(properties, tmp_path) == {
        "A": {"Fn::Sub": ["x-${J}-3", {"J": join}]},
        "B": [{"Ref": "Bucket"}],
        "C": "plain",
    }


def test_state_machine_input_is_what_maas_train_submit_prints(template: dict[str, Any]) -> None:
    from training.submit import build_request, execution_input

    request = build_request(
        job_name="digits-20260101-120000-abcd",
        image="763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-training:2.16-gpu-py310",
        role_arn="arn:aws:iam::123456789012:role/maas-TrainingJobRole",
        bucket="maas-models-123456789012-us-east-1",
        region="us-east-1",
        source_uri="s3://maas-models-123456789012-us-east-1/training-jobs/x/source/sourcedir.tar.gz",
        channels={"train": "s3://data/train/", "validation": "s3://data/validation/"},
        hyperparameters={"model_name": "digits", "epochs": 3},
    )
    given = execution_input(request)

    def fill(node: Any) -> Any:  # the JSONPath "$.key" parameters, as Step Functions fills them
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key.endswith(".$"):
                    assert re.fullmatch(r"\$\.\w+", value), value
                    out[key[:-2]] = given[value[2:]]
                else:
                    out[key] = fill(value)
            return out
        return [fill(v) for v in node] if isinstance(node, list) else node

    sent = fill(_states(template)["Train"]["Parameters"])
    for key in ("TrainingJobName", "HyperParameters", "InputDataConfig"):
        assert sent[key] == request[key], key
    assert sent["AlgorithmSpecification"]["TrainingImage"] == request["AlgorithmSpecification"]["TrainingImage"]
    assert sent["AlgorithmSpecification"]["MetricDefinitions"] == request["AlgorithmSpecification"]["MetricDefinitions"]
    assert sent["ResourceConfig"]["InstanceType"] == request["ResourceConfig"]["InstanceType"]
    assert sent["StoppingCondition"] == request["StoppingCondition"]
    assert sent["Environment"]["KERAS_BACKEND"] == request["Environment"]["KERAS_BACKEND"]
    # Every input the machine reads is one the CLI prints.
    used = set(re.findall(r'"\$\.(\w+)"', json.dumps(_states(template)["Train"]["Parameters"])))
    assert used == set(given)


def test_training_roles_grant_no_wildcard_but_what_iam_forces(translated: dict[str, Any]) -> None:
    for role in ("TrainingJobRole", "TrainingStateMachineRole"):
        for statement in _statements_of(translated, role):
            assert statement["Effect"] == "Allow"
            actions = as_list(statement["Action"])
            for action in actions:
                assert "*" not in action, f"{role}: wildcard action {action!r}"
            for arn in _arns(statement):
                if arn == "*":
                    # No resource-level permissions exist for these; the metric one is held to its namespace.
                    assert actions in (
                        ["ecr:GetAuthorizationToken"],
                        ["cloudwatch:PutMetricData"],
                        list(_STATE_MACHINE_TRACES),
                    ), (role, actions)
                    if actions == ["cloudwatch:PutMetricData"]:
                        assert statement["Condition"] == {
                            "StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}
                        }
                else:
                    assert isinstance(arn, dict) or ":::*" not in arn, f"{role}: unbounded {arn!r}"
        managed = translated["Resources"][role]["Properties"].get("ManagedPolicyArns", [])
        assert managed == [], f"{role}: managed policies grant more than the job needs: {managed}"


# What Step Functions needs for X-Ray tracing (Tracing.Enabled), instead of the managed AWSXrayWriteOnlyAccess.
_STATE_MACHINE_TRACES = (
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
)


def test_state_machine_runs_training_jobs_and_passes_only_the_training_role(translated: dict[str, Any]) -> None:
    statements = _statements_of(translated, "TrainingStateMachineRole")
    by_action = {action: s for s in statements for action in as_list(s["Action"])}
    assert set(by_action) == {
        "sagemaker:CreateTrainingJob",
        "sagemaker:DescribeTrainingJob",
        "sagemaker:StopTrainingJob",
        "sagemaker:AddTags",
        "iam:PassRole",
        "events:PutTargets",
        "events:PutRule",
        "events:DescribeRule",
        "s3:GetObject",
        *_STATE_MACHINE_TRACES,
    }
    assert _arns(by_action["s3:GetObject"]) == [f"arn:${{AWS::Partition}}:s3:::{BUCKET_NAME}/training-data/*"]
    job = "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:training-job/*"
    for action in ("CreateTrainingJob", "DescribeTrainingJob", "StopTrainingJob", "AddTags"):
        assert _arns(by_action[f"sagemaker:{action}"]) == [job]
    pass_role = by_action["iam:PassRole"]
    assert pass_role["Resource"] == {"Fn::GetAtt": ["TrainingJobRole", "Arn"]}
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    rule = "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/"
    rule += "StepFunctionsGetEventsForSageMakerTrainingJobsRule"
    for action in ("PutTargets", "PutRule", "DescribeRule"):
        assert _arns(by_action[f"events:{action}"]) == [rule]
    for action in _STATE_MACHINE_TRACES:
        assert by_action[action]["Resource"] == "*"
    trust = translated["Resources"]["TrainingStateMachineRole"]["Properties"]["AssumeRolePolicyDocument"]
    assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "states.amazonaws.com"}]
    assert [s["Condition"] for s in trust["Statement"]] == [
        {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    ]


def test_training_job_role_writes_only_training_jobs_and_models(template: dict[str, Any]) -> None:
    role = template["Resources"]["TrainingJobRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"} and trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    bucket = bucket_arn()["Fn::Sub"]
    statements = [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    actions: set[str] = set()
    for statement in statements:
        granted = as_list(statement["Action"])
        actions.update(granted)
        s3_arns = [a for a in _arns(statement) if isinstance(a, str) and ":s3:::" in a]
        for arn in s3_arns:
            assert arn == bucket or arn.startswith(f"{bucket}/"), f"not the model bucket by name: {arn!r}"
        for action in granted:
            if action == "s3:PutObject" and statement.get("Condition"):
                assert sorted(s3_arns) == sorted(f"{bucket}/{p}" for p in _VERSION_OBJECTS), s3_arns
            elif action in {"s3:PutObject", "s3:AbortMultipartUpload"} or action.startswith("s3:Delete"):
                assert s3_arns == [f"{bucket}/training-jobs/*"], s3_arns
            elif action == "s3:GetObject":
                assert {a.removeprefix(bucket) for a in s3_arns} == {
                    "/training-data/*",
                    "/training-jobs/*",
                    "/models/*",
                }
            elif action == "s3:ListBucket":
                assert s3_arns == [bucket]
                assert set(statement["Condition"]["StringLike"]["s3:prefix"]) == {
                    "training-data/*",
                    "training-jobs/*",
                    "models/*",
                }
            elif action.startswith("ecr:") and action != "ecr:GetAuthorizationToken":
                assert _arns(statement) == [
                    "arn:${AWS::Partition}:ecr:${AWS::Region}:${TrainingImageAccount}:repository/${TrainingImageRepository}"
                ]
            elif action.startswith("logs:"):
                for arn in _arns(statement):
                    assert ":log-group:/aws/sagemaker/TrainingJobs" in arn, arn
    assert not {a for a in actions if a.startswith("s3:Delete")}
    assert {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "ecr:BatchGetImage", "logs:PutLogEvents"} <= actions
    assert template["Parameters"]["TrainingImageAccount"]["Default"] == "763104351884"


# What a training job may write under models/: a new version's two objects, with If-None-Match.
_VERSION_OBJECTS = (
    "models/*/????????T??????Z-????????/model.onnx",
    "models/*/????????T??????Z-????????/manifest.json",
)


def s3_put_allowed(statements: list[dict[str, Any]], key: str, if_none_match: bool) -> bool:
    """Whether these statements allow a PutObject of `key` in the model bucket, as IAM decides it.

    IAM's resource wildcards are fnmatch's (``*`` crosses ``/``, ``?`` is one character); the one
    condition written on such grants is S3's ``Null: {"s3:if-none-match": "false"}`` (the header is
    sent). Any other condition fails the test rather than being read wrongly.
    """
    prefix = f"arn:${{AWS::Partition}}:s3:::{BUCKET_NAME}/"
    for statement in statements:
        if statement["Effect"] != "Allow" or "s3:PutObject" not in as_list(statement["Action"]):
            continue
        patterns = [arn.removeprefix(prefix) for arn in _arns(statement) if arn.startswith(prefix)]
        if not any(fnmatchcase(key, pattern) for pattern in patterns):
            continue
        condition = statement.get("Condition", {})
        assert set(condition) <= {"Null"} and set(condition.get("Null", {})) <= {"s3:if-none-match"}, condition
        if condition and condition["Null"]["s3:if-none-match"] == "false" and not if_none_match:
            continue
        return True
    return False


def test_training_job_role_may_add_versions_but_never_touch_aliases_or_history(template: dict[str, Any]) -> None:
    statements = [
        s
        for policy in template["Resources"]["TrainingJobRole"]["Properties"]["Policies"]
        for s in policy["PolicyDocument"]["Statement"]
    ]
    version = "models/digits/20260101T120000Z-0123abcd"
    for name in ("model.onnx", "manifest.json"):
        assert s3_put_allowed(statements, f"{version}/{name}", if_none_match=True)
        # Without If-None-Match the write could replace a published version: refused.
        assert not s3_put_allowed(statements, f"{version}/{name}", if_none_match=False)
    # Aliases and their history change only by compare-and-swap through the admin and guard functions.
    for key in (
        "models/digits/aliases/production.json",
        "models/digits/aliases/canary.json",
        "models/digits/history/production/20260101T120000000000Z-0123abcd.json",
        "models/digits/20260101T120000Z-0123abcd/other.bin",
        "models/digits/latest/model.onnx",
        "batch/out/digits/production/x.jsonl",
    ):
        for header in (True, False):
            assert not s3_put_allowed(statements, key, if_none_match=header), key
    assert s3_put_allowed(statements, "training-jobs/job-1/output/model.tar.gz", if_none_match=False)


def test_every_write_of_a_publish_without_an_alias_is_one_the_training_role_allows(
    template: dict[str, Any], registry: Any, s3: Any, digits_onnx: bytes, make_manifest: Any
) -> None:
    """The registry's own publish, on moto's S3, makes only writes TrainingJobRole allows.

    The job's publish must not create the first alias (alias_on_first_publish=None): aliases are
    promoted through the admin route, with compare-and-swap and history.
    """
    statements = [
        s
        for policy in template["Resources"]["TrainingJobRole"]["Properties"]["Policies"]
        for s in policy["PolicyDocument"]["Statement"]
    ]
    writes: list[tuple[str, bool]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        writes.append((params["Key"], "IfNoneMatch" in params))

    for operation in ("PutObject", "CopyObject", "CreateMultipartUpload", "DeleteObject", "DeleteObjects"):
        s3.meta.events.register(f"before-parameter-build.s3.{operation}", record)
    registry.publish("digits", digits_onnx, make_manifest(), alias_on_first_publish=None)
    registry.publish("digits", digits_onnx + b"", make_manifest(), version="20991231T000000Z-0000000a")
    assert len(writes) == 4, writes
    for key, if_none_match in writes:
        assert s3_put_allowed(statements, key, if_none_match), key
    # A default first publish also creates the production alias and its history: denied to the job.
    writes.clear()
    registry.publish("iris", digits_onnx, make_manifest())
    denied = [key for key, if_none_match in writes if not s3_put_allowed(statements, key, if_none_match)]
    assert denied and all(key.startswith(("models/iris/aliases/", "models/iris/history/")) for key in denied)


def test_outputs_name_the_training_state_machine_and_role(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["TrainingStateMachineArn"]["Value"] == {"Ref": "TrainingStateMachine"}
    assert outputs["TrainingJobRoleArn"]["Value"] == {"Fn::GetAtt": ["TrainingJobRole", "Arn"]}


def test_a_start_file_under_training_data_starts_the_state_machine(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["ModelBucket"]["Properties"]
    assert bucket["NotificationConfiguration"]["EventBridgeConfiguration"] == {"EventBridgeEnabled": True}
    (event,) = template["Resources"]["TrainingStateMachine"]["Properties"]["Events"].values()
    assert event["Type"] == "EventBridgeRule"
    pattern = event["Properties"]["Pattern"]
    assert pattern["source"] == ["aws.s3"] and pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["bucket"]["name"] == [{"Fn::Sub": BUCKET_NAME}]
    assert pattern["detail"]["object"]["key"] == [{"wildcard": "training-data/*/start.json"}]


# --- the model lifecycle: admin routes, canary guard, alarms, SnapStart ---------------------------


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
        "s3:DeleteObject": {"/models/*/manifest.json", "/models/*/model.onnx"},
    }
    assert _writes(translated, "CanaryGuardFunctionRole") == {"s3:PutObject": alias_objects}
    assert not any(
        suffix.startswith("/models") for suffix in _writes(translated, "ApiFunctionRole").get("s3:PutObject", set())
    )


def test_every_admin_route_is_iam_signed_and_served_by_the_admin_function(template: dict[str, Any]) -> None:
    admin = api_routes(template, "AdminFunction")
    assert admin == {
        ("GET", "/models/{name}/aliases/{alias}"),
        ("PUT", "/models/{name}/aliases/{alias}"),
        ("POST", "/models/{name}/aliases/{alias}/rollback"),
        ("GET", "/models/{name}/aliases/{alias}/history"),
        ("DELETE", "/models/{name}/versions/{version}"),
    }
    assert admin <= iam_routes(template)


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


@pytest.mark.parametrize("snapstart", ["None", "PublishedVersions"])
def test_snapstart_is_a_parameter_of_the_api_function(template: dict[str, Any], snapstart: str) -> None:
    stack = deployed(
        template_check.translate(template, root=ROOT), {"SnapStart": snapstart, "SnapStartPreloadModels": "digits"}
    )
    function = stack["Resources"]["ApiFunction"]["Properties"]
    assert function["SnapStart"] == {"ApplyOn": snapstart}
    assert function["Runtime"] >= "python3.12"  # SnapStart for Python starts at 3.12
    assert function["Environment"]["Variables"]["SNAPSTART_PRELOAD_MODELS"] == "digits"
    # API Gateway invokes the published alias, where SnapStart applies.
    assert any(
        r["Type"] == "AWS::Lambda::Alias" and r["Properties"]["Name"] == "live" for r in stack["Resources"].values()
    )
