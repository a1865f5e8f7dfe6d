"""Lint the CloudFormation that template.yaml becomes, not only the SAM source.

cfn-lint validates SAM resources against SAM's own schemas; errors that only appear once the
transform has expanded them (the IAM role, the API deployment, the permissions) go unseen.
This translates the template with aws-sam-translator, offline, and runs cfn-lint on the result,
with AWS's serverless rules (cfn-lint-serverless: log retention, dead-letter queues, on-failure
destinations, tracing) besides cfn-lint's own: they see the rules, mappings and permissions SAM
makes, which the SAM source does not show.
Every template of the stack is checked on its own, as CloudFormation transforms each: template.yaml
and each nested application it names with a local Location (templates/*.yaml).
`--output` keeps those results for other scanners (DIR/template.json, DIR/templates/<name>.json):
`make lint` runs checkov on them as on the sources. A state machine whose definition is a local
ASL file (DefinitionUri) is checked with that file inlined, its DefinitionSubstitutions applied
(inline_definitions).

    python -m maas.template_check [template.yaml] [--region us-east-1] [--output build/translated]
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import boto3
from cfnlint.api import ManualArgs, lint_file
from cfnlint.decode import cfn_yaml
from cfnlint.match import Match
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from maas.template import stack_files, sub_text

DEFAULT_TEMPLATE = Path("template.yaml")
DEFAULT_REGION = "us-east-1"
# awslabs/serverless-rules, as `cfn-lint -a cfn_lint_serverless.rules` loads them.
SERVERLESS_RULES = "cfn_lint_serverless.rules"


def load_template(path: Path) -> dict[str, Any]:
    """Parse a YAML or JSON template, turning short-form tags (!Ref, !Sub, ...) into their long form."""
    return cfn_yaml.loads(path.read_text(encoding="utf-8"), fname=str(path))


def _plain(value: Any) -> Any:
    """cfn-lint's loader returns dict/str subclasses that carry line marks; the translator wants plain ones."""
    return json.loads(json.dumps(value))


# Where `sam build`/`sam package` would put an uploaded artifact; the transform only checks the form.
_PACKAGED_URI = "s3://maas-template-check/artifact.zip"
# ...and a nested template: CloudFormation takes an https S3 URL, which cfn-lint does not try to read.
_PACKAGED_TEMPLATE_URL = "https://maas-template-check.s3.amazonaws.com/nested.template"
_LOCAL_URI_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
    "AWS::Serverless::Api": "DefinitionUri",
    "AWS::Serverless::HttpApi": "DefinitionUri",
}


def _as_packaged(template: dict[str, Any]) -> dict[str, Any]:
    """Point local paths (CodeUri: src/) at S3, as `sam package` does before CloudFormation sees them."""
    sections = [template.get("Globals", {}).get("Function", {})]
    for resource in template.get("Resources", {}).values():
        prop = _LOCAL_URI_PROPERTIES.get(resource.get("Type"))
        if prop and isinstance(resource.get("Properties", {}).get(prop), str):
            sections.append(resource["Properties"])
    for section in sections:
        for prop in ("CodeUri", "ContentUri", "DefinitionUri"):
            if isinstance(section.get(prop), str) and not section[prop].startswith("s3://"):
                section[prop] = _PACKAGED_URI
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Serverless::Application" and "://" not in str(props.get("Location")):
            props["Location"] = _PACKAGED_TEMPLATE_URL
    return template


# A DefinitionSubstitutions placeholder in an ASL file: ${Name}.
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


def _substitute(text: str, substitutions: dict[str, Any], source: Path) -> Any:
    """One ASL string with its ${Name} placeholders filled as CloudFormation fills DefinitionSubstitutions.

    A placeholder that is the whole string becomes its value (a Ref, a GetAtt...); one inside a string
    becomes part of an Fn::Sub, so the translated state machine reads as if written inline.
    """
    names = _PLACEHOLDER.findall(text)
    missing = sorted(set(names) - set(substitutions))
    if missing:
        raise ValueError(f"{source}: no DefinitionSubstitutions entry for {', '.join(missing)} (in {text!r})")
    if not names:
        return text
    if len(names) == 1 and _PLACEHOLDER.fullmatch(text) and isinstance(substitutions[names[0]], dict):
        return substitutions[names[0]]
    variables: dict[str, Any] = {}

    def fill(match: re.Match[str]) -> str:
        written = sub_text(substitutions[match.group(1)])
        if written is None:
            variables[match.group(1)] = substitutions[match.group(1)]
            return match.group(0)
        return written

    body = _PLACEHOLDER.sub(fill, text)
    if variables:
        return {"Fn::Sub": [body, variables]}
    return {"Fn::Sub": body} if "${" in body else body


def state_machine_definition(properties: dict[str, Any], root: Path) -> Any:
    """The ASL a state machine runs: its DefinitionUri file (JSON, relative to `root`, the template's
    folder) with its DefinitionSubstitutions applied."""
    source = root / properties["DefinitionUri"]
    substitutions = properties.get("DefinitionSubstitutions", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(value) for value in node]
        return _substitute(node, substitutions, source) if isinstance(node, str) else node

    return walk(json.loads(source.read_text(encoding="utf-8")))


def inline_definitions(template: dict[str, Any], root: Path) -> dict[str, Any]:
    """Give each state machine whose DefinitionUri is a local file that file as its Definition.

    `sam package` would upload the file and CloudFormation fill its placeholders; the translator
    offline would only see an S3 address. Inlined, with the substitutions applied, the states and
    what they refer to (a role's GetAtt, a bucket's Sub) reach the translated template as if written
    inline, as they did before the definition had a file of its own.
    """
    inlined = copy.deepcopy(template)
    for resource in inlined.get("Resources", {}).values():
        props = resource.get("Properties", {})
        uri = props.get("DefinitionUri")
        if resource.get("Type") == "AWS::Serverless::StateMachine" and isinstance(uri, str) and "://" not in uri:
            props["Definition"] = state_machine_definition(props, root)
            del props["DefinitionUri"]
            props.pop("DefinitionSubstitutions", None)
    return inlined


def translate(
    template: dict[str, Any],
    region: str = DEFAULT_REGION,
    parameters: dict[str, Any] | None = None,
    root: Path = DEFAULT_TEMPLATE.parent,
) -> dict[str, Any]:
    """Expand the SAM resources into plain CloudFormation, with no AWS call.

    A session with an explicit region and fake credentials keeps the pseudo-parameters offline; an
    empty managed-policy map is enough because the template names no AWS managed policy by name.
    `parameters` override the defaults where SAM itself reads a parameter (as `sam deploy
    --parameter-overrides` would); Refs SAM passes through stay Refs either way. Local files the
    template names (an ASL DefinitionUri) are read relative to `root`, the template's folder.
    """
    session = boto3.session.Session(
        region_name=region,
        aws_access_key_id="offline",
        aws_secret_access_key="offline",  # noqa: S106
    )
    translator = Translator(managed_policy_map={}, sam_parser=Parser(), boto_session=session)
    packaged = _as_packaged(inline_definitions(_plain(template), root))
    try:
        return translator.translate(packaged, parameter_values=dict(parameters or {}))
    finally:
        # The transform counts what it expands (a nested application, for one) for a publisher that
        # goes nowhere; publishing here keeps it from warning about "unpublished metrics" at exit.
        translator.metrics.publish()


# Resources SAM makes from an AWS::Serverless::Api besides the RestApi, found by the RestApiId they refer to.
_API_PARTS = ("AWS::ApiGateway::Stage", "AWS::ApiGateway::Deployment")


def _source_of(template: dict[str, Any], reference: Any, source_type: str) -> dict[str, Any]:
    """The template's resource of `source_type` that a {"Ref": id} names, or {}."""
    logical_id = reference.get("Ref") if isinstance(reference, dict) else None
    source = template.get("Resources", {}).get(logical_id, {}) if isinstance(logical_id, str) else {}
    return source if source.get("Type") == source_type else {}


def carry_skips(template: dict[str, Any], translated: dict[str, Any]) -> dict[str, Any]:
    """Give the resources SAM makes beside a resource the skips written on that resource.

    SAM copies a resource's Metadata to the resource it is named after (the function, the RestApi),
    so skips on a function reach the translated function unaided. Some checks, though, judge a
    resource SAM makes beside it: checkov the stage (caching, access logs) whose settings are
    written on the AWS::Serverless::Api, cfn-lint's serverless rules the event source mapping made
    from a function's SQS event. Carrying the API's checkov skips to its stage and deployment, and
    a function's cfn-lint skips to its event source mappings, keeps every skip, and its reason, in
    template.yaml alone. Resources with Metadata of their own keep it.
    """
    carried = copy.deepcopy(translated)
    for resource in carried.get("Resources", {}).values():
        if "Metadata" in resource:
            continue
        props = resource.get("Properties", {})
        if resource.get("Type") in _API_PARTS:
            key, source = "checkov", _source_of(template, props.get("RestApiId"), "AWS::Serverless::Api")
        elif resource.get("Type") == "AWS::Lambda::EventSourceMapping":
            key, source = "cfn-lint", _source_of(template, props.get("FunctionName"), "AWS::Serverless::Function")
        else:
            continue
        skips = source.get("Metadata", {}).get(key)
        if skips:
            resource["Metadata"] = {key: copy.deepcopy(skips)}
    return carried


def _config(region: str) -> ManualArgs:
    return ManualArgs(regions=[region], append_rules=[SERVERLESS_RULES])


def lint(translated: dict[str, Any], region: str = DEFAULT_REGION, output: Path | None = None) -> list[Match]:
    """Run cfn-lint and the serverless rules on translated CloudFormation written to `output` (a
    temporary file when omitted)."""
    text = json.dumps(translated, indent=2, sort_keys=True)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        return lint_file(output, config=_config(region))
    with tempfile.TemporaryDirectory(prefix="maas-template-") as folder:
        path = Path(folder) / "translated.json"
        path.write_text(text, encoding="utf-8")
        return lint_file(path, config=_config(region))


def check(path: Path = DEFAULT_TEMPLATE, region: str = DEFAULT_REGION, output: Path | None = None) -> list[Match]:
    """Every cfn-lint finding on one translated template (errors, warnings and informational).

    The file linted, and kept at `output`, carries skips onto the resources SAM makes (carry_skips).
    """
    template = load_template(path)
    return lint(carry_skips(_plain(template), translate(template, region, root=path.parent)), region, output)


def check_stack(
    path: Path = DEFAULT_TEMPLATE, region: str = DEFAULT_REGION, output: Path | None = None
) -> dict[Path, list[Match]]:
    """`check` of the template and of every template nested under it, by file; with `output`, each
    translation is kept under that folder at the file's place relative to the template's folder."""
    root = path.resolve().parent
    return {
        file: check(file, region, output / file.relative_to(root).with_suffix(".json") if output else None)
        for file in stack_files(path)
    }


def failures(matches: list[Match]) -> list[Match]:
    """Errors and warnings (the serverless rules' WS* are warnings): what fails, as in cfn-lint's exit code."""
    return [m for m in matches if m.rule.severity in ("error", "warning")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maas.template_check", description=__doc__.splitlines()[0])
    parser.add_argument("template", nargs="?", type=Path, default=DEFAULT_TEMPLATE)
    parser.add_argument("--region", default=DEFAULT_REGION)
    parser.add_argument(
        "--output", type=Path, help="keep each translated template (JSON) under this folder (for checkov)"
    )
    args = parser.parse_args(argv)

    try:
        found = check_stack(args.template, args.region, args.output)
    except Exception as error:  # the translator reports a bad SAM template by raising
        print(f"{args.template}: SAM transform failed: {error}", file=sys.stderr)
        return 2

    failed = []
    for path, matches in found.items():
        for match in matches:
            print(f"{match.rule.severity}: [{match.rule.id}] {match.message} ({path.name}:{match.linenumber})")
        failed += failures(matches)
        summary = f"{len(matches)} finding(s), {len(failures(matches))} error(s) or warning(s)"
        print(f"{path}: translated and linted with cfn-lint: {summary}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
