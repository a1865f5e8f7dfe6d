"""templates/training.yaml: the training roles, TrainingStateMachine and its ASL file, and what
`maas train submit` hands them."""

from __future__ import annotations

import json
import re
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
from template_support import (
    ASL_FILE,
    BUCKET_NAME,
    ROOT,
    arns,
    as_list,
    bucket_arn,
    check_copy,
    deployed,
    only_this_rule_may_send,
    parked_with_an_alarm,
    statements_of,
)

from maas import template_check


@pytest.mark.parametrize("topic", ["", "arn:aws:sns:us-east-1:123456789012:on-call"], ids=["no-topic", "topic"])
def test_a_start_file_that_started_no_training_is_parked_and_raises_an_alarm(
    template: dict[str, Any], topic: str
) -> None:
    stack = deployed(template_check.translate(template, root=ROOT), {"AlarmTopicArn": topic})
    only_this_rule_may_send(stack, "TrainingStartDeadLetterQueue", "TrainingStateMachineStartFile")
    rule = stack["Resources"]["TrainingStateMachineStartFile"]["Properties"]
    assert rule["Targets"][0]["Arn"] == {"Ref": "TrainingStateMachine"}
    parked_with_an_alarm(stack, "TrainingStartDeadLetterQueue", "TrainingStartFailedAlarm", topic)


def test_training_executions_are_traced_without_a_managed_policy(translated: dict[str, Any]) -> None:
    machine = translated["Resources"]["TrainingStateMachine"]["Properties"]
    assert machine["TracingConfiguration"] == {"Enabled": True}
    assert machine["RoleArn"] == {"Fn::GetAtt": ["TrainingStateMachineRole", "Arn"]}


def _definition(template: dict[str, Any]) -> dict[str, Any]:
    """TrainingStateMachine's ASL as it runs: its DefinitionUri file with its DefinitionSubstitutions applied."""
    return template_check.state_machine_definition(template["Resources"]["TrainingStateMachine"]["Properties"], ROOT)


def _states(template: dict[str, Any]) -> dict[str, Any]:
    return _definition(template)["States"]


def test_training_state_machine_runs_the_job_with_create_training_job_sync(template: dict[str, Any]) -> None:
    machine = template["Resources"]["TrainingStateMachine"]
    assert machine["Type"] == "AWS::Serverless::StateMachine"
    assert machine["Properties"]["Type"] == "STANDARD"  # .sync waits longer than an express machine lives
    assert machine["Properties"]["DefinitionUri"] == ASL_FILE.relative_to(ROOT).as_posix()
    definition = _definition(template)
    states = definition["States"]
    start = states[definition["StartAt"]]
    # Started by hand with the job's input, or by an S3 event for a start file holding that input.
    assert start["Type"] == "Choice" and start["Default"] == "Defaults"  # then Train (instance_count filled in)
    (from_s3,) = start["Choices"]
    assert from_s3 == {"Variable": "$.detail.object.key", "IsPresent": True, "Next": "ReadStartFile"}
    read = states["ReadStartFile"]
    assert read["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:states:::aws-sdk:s3:getObject"}
    assert read["ResultSelector"] == {"input.$": "States.StringToJson($.Body)"} and read["Next"] == "Defaults"
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
    nexts = {s.get("Next") for s in states.values()} | {catch["Next"]}
    for state in states.values():  # every Choice's branches and default
        nexts |= {c["Next"] for c in state.get("Choices", [])} | {state.get("Default")}
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
    assert check_copy(tmp_path, ("${TrainingJobRoleArn}", "${TrainingRole}")) == 2
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
    assert sent["ResourceConfig"]["InstanceCount"] == request["ResourceConfig"]["InstanceCount"]
    assert sent["StoppingCondition"] == request["StoppingCondition"]
    assert sent["Environment"]["KERAS_BACKEND"] == request["Environment"]["KERAS_BACKEND"]
    # Every input the machine reads is one the CLI prints.
    used = set(re.findall(r'"\$\.(\w+)"', json.dumps(_states(template)["Train"]["Parameters"])))
    assert used == set(given)


def test_a_state_machine_input_without_instance_count_runs_one_instance(template: dict[str, Any]) -> None:
    """Inputs and start files written before instance_count existed: both ways in pass the Defaults
    choice, which sends an input lacking it through a Pass that sets 1, then to Train."""
    states = _states(template)
    assert states["Start"]["Default"] == "Defaults" and states["ReadStartFile"]["Next"] == "Defaults"
    (missing,) = states["Defaults"]["Choices"]
    assert missing == {"Variable": "$.instance_count", "IsPresent": False, "Next": "OneInstance"}
    assert states["Defaults"]["Default"] == "Train"
    one = states["OneInstance"]
    assert (one["Type"], one["Result"], one["ResultPath"], one["Next"]) == ("Pass", 1, "$.instance_count", "Train")
    assert states["Train"]["Parameters"]["ResourceConfig"]["InstanceCount.$"] == "$.instance_count"


def test_training_roles_grant_no_wildcard_but_what_iam_forces(translated: dict[str, Any]) -> None:
    for role in ("TrainingJobRole", "TrainingStateMachineRole"):
        for statement in statements_of(translated, role):
            assert statement["Effect"] == "Allow"
            actions = as_list(statement["Action"])
            for action in actions:
                assert "*" not in action, f"{role}: wildcard action {action!r}"
            for arn in arns(statement):
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
    statements = statements_of(translated, "TrainingStateMachineRole")
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
    assert arns(by_action["s3:GetObject"]) == [f"arn:${{AWS::Partition}}:s3:::{BUCKET_NAME}/training-data/*"]
    job = "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:training-job/*"
    for action in ("CreateTrainingJob", "DescribeTrainingJob", "StopTrainingJob", "AddTags"):
        assert arns(by_action[f"sagemaker:{action}"]) == [job]
    pass_role = by_action["iam:PassRole"]
    assert pass_role["Resource"] == {"Fn::GetAtt": ["TrainingJobRole", "Arn"]}
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    rule = "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/"
    rule += "StepFunctionsGetEventsForSageMakerTrainingJobsRule"
    for action in ("PutTargets", "PutRule", "DescribeRule"):
        assert arns(by_action[f"events:{action}"]) == [rule]
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
        s3_arns = [a for a in arns(statement) if isinstance(a, str) and ":s3:::" in a]
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
                assert arns(statement) == [
                    "arn:${AWS::Partition}:ecr:${AWS::Region}:${TrainingImageAccount}:repository/${TrainingImageRepository}"
                ]
            elif action.startswith("logs:"):
                for arn in arns(statement):
                    assert ":log-group:/aws/sagemaker/TrainingJobs" in arn, arn
    assert not {a for a in actions if a.startswith("s3:Delete")}
    assert {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "ecr:BatchGetImage", "logs:PutLogEvents"} <= actions
    assert template["Parameters"]["TrainingImageAccount"]["Default"] == "763104351884"


# What a training job may write under models/: a new version's objects (a split model's weights too) and
# its number, with If-None-Match.
_VERSION_OBJECTS = (
    "models/*/????????T??????Z-????????/model.onnx",
    "models/*/????????T??????Z-????????/model.onnx.data",
    "models/*/????????T??????Z-????????/manifest.json",
    "models/*/numbers/*.json",
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
        patterns = [arn.removeprefix(prefix) for arn in arns(statement) if arn.startswith(prefix)]
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
    for key in [f"{version}/{name}" for name in ("model.onnx", "model.onnx.data", "manifest.json")] + [
        "models/digits/numbers/3.json"
    ]:
        assert s3_put_allowed(statements, key, if_none_match=True)
        # Without If-None-Match the write could replace a published version, or renumber one: refused.
        assert not s3_put_allowed(statements, key, if_none_match=False)
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
    assert len(writes) == 6, writes  # per version: model.onnx, its number, manifest.json
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
