"""template.yaml, the stack as a whole: every template lints and validates, the storage it shares
(buckets, queues), least privilege across every role, and every skip of a check said why."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from template_support import (
    ALARM_EVENTS,
    API_EVENTS,
    BATCH_EVENTS,
    BUCKET_NAME,
    EVENTS,
    FUNCTIONS,
    ROOT,
    TEMPLATE,
    api_routes,
    arn_of,
    as_list,
    bucket_arn,
    check_copy,
    copy_stack,
    deployed,
    inline_statements,
)

from maas import template_check
from maas.template import load_stack, stack_files

# template.yaml and each nested application it names, in that order.
STACK_FILES = stack_files(TEMPLATE)


def test_the_stack_is_template_yaml_and_one_nested_application_per_concern() -> None:
    names = [path.relative_to(ROOT).as_posix() for path in STACK_FILES]
    assert names == [
        "template.yaml",
        "templates/serving.yaml",
        "templates/batch.yaml",
        "templates/training.yaml",
        "templates/monitoring.yaml",
    ]


def test_the_nested_templates_name_neither_the_bucket_nor_their_own_stack() -> None:
    """Each concern gets the bucket as ModelBucketName and ModelBucketArn, built once by template.yaml:
    every grant on it is ${ModelBucketArn}/<a prefix of src/shared/layout.py>. AWS::StackName in a
    nested stack is that stack's own name (maas-Serving-1A2B...), not the one the API, the log groups
    and the alarms are named after: they take the root's as the StackName parameter."""
    for path in STACK_FILES[1:]:
        text = path.read_text(encoding="utf-8")
        assert "AWS::StackName" not in text, path.name
        assert "arn:${AWS::Partition}:s3:::" not in text and "-models-" not in text, path.name


def test_every_route_and_its_event_live_in_the_serving_template(template: dict[str, Any]) -> None:
    # A new route: its handler under src/functions/ and its Api event in templates/serving.yaml.
    serving = template_check.load_template(ROOT / "templates" / "serving.yaml")
    assert api_routes(json.loads(json.dumps(serving))) == api_routes(template)
    root = template_check.load_template(TEMPLATE)
    assert not [k for k, r in root["Resources"].items() if r["Type"] == "AWS::Serverless::Function"]


def test_the_stack_keeps_every_output_users_read(template: dict[str, Any]) -> None:
    # Scripts read these from `aws cloudformation describe-stacks`; the nested stacks' come up through the root.
    assert set(template["Outputs"]) == {
        "ApiUrl",
        "ModelBucketName",
        "ApiFunctionArn",
        "ApiKeyId",
        "BatchInputPrefix",
        "BatchQueueUrl",
        "BatchDeadLetterQueueUrl",
        "AdminFunctionArn",
        "BatchFunctionArn",
        "TrainingStateMachineArn",
        "TrainingJobRoleArn",
    }
    assert template["Outputs"]["ApiFunctionArn"]["Value"] == {"Fn::GetAtt": ["ApiFunction", "Arn"]}


def test_the_stage_url_is_every_clients_base_url() -> None:
    """A stage named v1 would make a TF Serving client given the stage URL call /v1/v1/models/...: the
    stage is never a protocol's first segment (v1, v2, ...), so {stage URL}/v1/models/m:predict is TF
    Serving's path and {stage URL}/v2/models/m/infer Open Inference's."""
    root = template_check.load_template(TEMPLATE)
    stage = root["Parameters"]["StageName"]
    allowed = re.compile(stage["AllowedPattern"])  # CloudFormation's (Java) syntax reads the same here
    assert allowed.fullmatch(stage["Default"]) and not stage["Default"].lower().startswith("v")
    assert [n for n in ("api", "prod", "live_2", "v1beta", "vx") if not allowed.fullmatch(n)] == []
    assert [n for n in ("v1", "v2", "V1", "v10", "", "a-b") if allowed.fullmatch(n)] == []
    samconfig = (ROOT / "samconfig.toml").read_text()
    assert f'StageName=\\"{stage["Default"]}\\"' in samconfig


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        # a parameter the child does not declare (CloudFormation refuses the nested stack)
        (
            ("        StageName: !Ref StageName\n", "        StageName: !Ref StageName\n        Stage: v1\n"),
            "passed but not declared ['Stage']",
        ),
        # one it declares without a default, not passed
        (("        SnapStart: !Ref SnapStart\n", ""), "declared but not passed ['SnapStart']"),
        # an output the child does not declare
        (("!GetAtt Serving.Outputs.ApiKeyId", "!GetAtt Serving.Outputs.ApiKey"), "Serving.Outputs.ApiKey, which"),
        # Globals that would differ between the functions of two concerns
        (('        MAX_BATCH_SIZE: "256"\n', '        MAX_BATCH_SIZE: "512"\n'), "Globals unlike its siblings'"),
    ],
    ids=["undeclared-parameter", "missing-parameter", "undeclared-output", "globals"],
)
def test_a_stack_cloudformation_would_refuse_is_refused_locally(
    tmp_path: Path, change: tuple[str, str], refusal: str
) -> None:
    with pytest.raises(SystemExit, match=re.escape(refusal)):
        load_stack(copy_stack(tmp_path, change))


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_translated_template_passes_cfn_lint(path: Path) -> None:
    findings = template_check.check(path)
    assert findings == [], "\n".join(f"[{m.rule.id}] {m.message}" for m in findings)


def test_template_check_fails_on_an_error_in_the_translated_template(tmp_path: Path) -> None:
    # ApiAccessLogGroup's retention, in templates/serving.yaml: a nested template is checked too.
    assert check_copy(tmp_path, ("RetentionInDays: 90", "RetentionInDays: 91")) == 1
    assert template_check.main([str(TEMPLATE)]) == 0


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_sam_validate_lint_passes(path: Path) -> None:
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
        [str(sam), "validate", "--lint", "--template-file", str(path), "--region", "us-east-1"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


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
    assert arn_of("ModelBucket") in deny["Resource"]
    assert arn_of("ModelBucket", "/*") in deny["Resource"]


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
        # Refuses plain HTTP on the bucket and on its objects, naming both by the bucket's own ARN.
        (deny,) = [s for s in policies[logical_id]["Statement"] if s["Effect"] == "Deny"]
        assert deny["Principal"] == "*" and as_list(deny["Action"]) == ["s3:*"]
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert deny["Resource"] == [arn_of(logical_id), arn_of(logical_id, "/*")]


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
    assert as_list(allow["Resource"]) == [arn_of("AccessLogBucket", f"/{prefix}*")]
    # Only this stack's model bucket, in this account: by name string (the model bucket depends on this).
    assert allow["Condition"] == {
        "ArnLike": {"aws:SourceArn": bucket_arn()},
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
    }
    assert '"Ref": "ModelBucket"' not in json.dumps(policy) and '["ModelBucket",' not in json.dumps(policy)


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
    assert check_copy(tmp_path, change) == 1
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
    output = tmp_path / "out"
    assert template_check.main([str(TEMPLATE), "--output", str(output)]) == 0
    # One translation per template, at its place: the API is serving's, BatchFunction batch's.
    assert sorted(p.relative_to(output).as_posix() for p in output.rglob("*.json")) == sorted(
        path.relative_to(ROOT).with_suffix(".json").as_posix() for path in STACK_FILES
    )
    written = {
        **json.loads((output / "templates" / "serving.json").read_text(encoding="utf-8"))["Resources"],
        **json.loads((output / "templates" / "batch.json").read_text(encoding="utf-8"))["Resources"],
    }
    skips = template["Resources"]["Api"]["Metadata"]["checkov"]
    (stage,) = [r for r in written.values() if r["Type"] == "AWS::ApiGateway::Stage"]
    assert stage["Metadata"] == {"checkov": skips}
    # SAM itself copies a resource's Metadata to the resource named after it.
    assert written["Api"]["Metadata"]["checkov"] == skips
    assert written["BatchFunction"]["Metadata"] == template["Resources"]["BatchFunction"]["Metadata"]
    # A function's cfn-lint skips reach the event source mapping SAM makes from its SQS event.
    (mapping,) = [r for r in written.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert mapping["Metadata"] == {"cfn-lint": template["Resources"]["BatchFunction"]["Metadata"]["cfn-lint"]}


def _checkov(paths: list[Path]) -> dict[str, Any]:
    """One checkov run over every file (its start-up costs seconds: once, not once per file)."""
    command = [str(CHECKOV), "--framework", "cloudformation", "--skip-download", "-o", "json"]
    for path in paths:
        command += ["-f", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_checkov_fails_no_check_on_the_template_or_its_translation(tmp_path: Path) -> None:
    if not CHECKOV.exists():
        pytest.skip("checkov is not installed (make .venv-tools/.installed)")
    translated = tmp_path / "translated"
    assert template_check.main([str(TEMPLATE), "--output", str(translated)]) == 0
    translations = sorted(translated.rglob("*.json"))
    assert len(translations) == len(STACK_FILES)
    paths = [*STACK_FILES, *translations]
    report = _checkov(paths)
    assert report["summary"]["parsing_errors"] == 0
    results = report["results"]
    failed = [(c["file_abs_path"], c["resource"], c["check_id"]) for c in results["failed_checks"]]
    assert failed == []
    skipped = {c["check_id"] for c in results["skipped_checks"]}
    assert skipped <= set().union(*CHECKOV_SKIPS.values()), skipped
    # Every file was read and checked: each has checks that passed.
    checked = {Path(c["file_abs_path"]).resolve() for c in results["passed_checks"]}
    assert checked == {path.resolve() for path in paths}, checked


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


def test_nothing_the_bucket_depends_on_refers_to_the_bucket(template: dict[str, Any]) -> None:
    # The bucket -> queue -> policy (-> function) chain becomes a circular dependency if any of
    # them names the bucket by Ref or GetAtt instead of by its name string.
    for logical_id, resource in template["Resources"].items():
        if logical_id in {"ModelBucket", "ModelBucketPolicy"}:
            continue
        text = json.dumps(resource)
        assert '"Ref": "ModelBucket"' not in text and '["ModelBucket",' not in text, logical_id


def test_every_event_is_an_api_or_a_batch_event() -> None:
    assert API_EVENTS and BATCH_EVENTS and ALARM_EVENTS
    assert sorted(API_EVENTS + BATCH_EVENTS + ALARM_EVENTS) == EVENTS, "an event in events/ that no test checks"
    assert len(set(API_EVENTS) | set(BATCH_EVENTS) | set(ALARM_EVENTS)) == len(EVENTS)


def test_sam_deploy_acknowledges_the_nested_applications() -> None:
    # CloudFormation refuses a stack with nested applications unless CAPABILITY_AUTO_EXPAND is given.
    import tomllib

    config = tomllib.loads((ROOT / "samconfig.toml").read_text(encoding="utf-8"))
    capabilities = config["default"]["deploy"]["parameters"]["capabilities"].split()
    root = template_check.load_template(TEMPLATE)
    assert any(r["Type"] == "AWS::Serverless::Application" for r in root["Resources"].values())
    assert {"CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"} <= set(capabilities)
