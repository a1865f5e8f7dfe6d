"""Lint the CloudFormation that template.yaml becomes, not only the SAM source.

cfn-lint validates SAM resources against SAM's own schemas; errors that only appear once the
transform has expanded them (the IAM role, the API deployment, the permissions) go unseen.
This translates the template with aws-sam-translator, offline, and runs cfn-lint on the result.
`--output` keeps that result for other scanners: `make lint` runs checkov on it as on the source.

    python -m maas.template_check [template.yaml] [--region us-east-1] [--output translated.json]
"""

from __future__ import annotations

import argparse
import copy
import json
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

DEFAULT_TEMPLATE = Path("template.yaml")
DEFAULT_REGION = "us-east-1"


def load_template(path: Path) -> dict[str, Any]:
    """Parse a YAML or JSON template, turning short-form tags (!Ref, !Sub, ...) into their long form."""
    return cfn_yaml.loads(path.read_text(encoding="utf-8"), fname=str(path))


def _plain(value: Any) -> Any:
    """cfn-lint's loader returns dict/str subclasses that carry line marks; the translator wants plain ones."""
    return json.loads(json.dumps(value))


# Where `sam build`/`sam package` would put an uploaded artifact; the transform only checks the form.
_PACKAGED_URI = "s3://maas-template-check/artifact.zip"
_LOCAL_URI_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
    "AWS::Serverless::Api": "DefinitionUri",
    "AWS::Serverless::HttpApi": "DefinitionUri",
    "AWS::Serverless::StateMachine": "DefinitionUri",
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
    return template


def translate(
    template: dict[str, Any], region: str = DEFAULT_REGION, parameters: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Expand the SAM resources into plain CloudFormation, with no AWS call.

    A session with an explicit region and fake credentials keeps the pseudo-parameters offline; an
    empty managed-policy map is enough because the template names no AWS managed policy by name.
    `parameters` override the defaults where SAM itself reads a parameter (as `sam deploy
    --parameter-overrides` would); Refs SAM passes through stay Refs either way.
    """
    session = boto3.session.Session(
        region_name=region,
        aws_access_key_id="offline",
        aws_secret_access_key="offline",  # noqa: S106
    )
    translator = Translator(managed_policy_map={}, sam_parser=Parser(), boto_session=session)
    return translator.translate(_as_packaged(copy.deepcopy(_plain(template))), parameter_values=dict(parameters or {}))


# Resources SAM makes from an AWS::Serverless::Api besides the RestApi, found by the RestApiId they refer to.
_API_PARTS = ("AWS::ApiGateway::Stage", "AWS::ApiGateway::Deployment")


def carry_checkov_skips(template: dict[str, Any], translated: dict[str, Any]) -> dict[str, Any]:
    """Give the stage (and deployment) SAM makes from an API the checkov skips written on that API.

    SAM copies a resource's Metadata to the resource it is named after (the function, the RestApi),
    so skips on a function reach the translated function unaided. A stage's settings (caching, access
    logs), though, are written on the AWS::Serverless::Api and checked by checkov on the
    AWS::ApiGateway::Stage: carrying the API's skips there keeps every skip, and its reason, in
    template.yaml alone. Resources with Metadata of their own keep it.
    """
    carried = copy.deepcopy(translated)
    for resource in carried.get("Resources", {}).values():
        if resource.get("Type") not in _API_PARTS or "Metadata" in resource:
            continue
        api_id = resource.get("Properties", {}).get("RestApiId")
        source = template.get("Resources", {}).get(api_id.get("Ref"), {}) if isinstance(api_id, dict) else {}
        skips = source.get("Metadata", {}).get("checkov") if source.get("Type") == "AWS::Serverless::Api" else None
        if skips:
            resource["Metadata"] = {"checkov": copy.deepcopy(skips)}
    return carried


def lint(translated: dict[str, Any], region: str = DEFAULT_REGION, output: Path | None = None) -> list[Match]:
    """Run cfn-lint on translated CloudFormation written to `output` (a temporary file when omitted)."""
    text = json.dumps(translated, indent=2, sort_keys=True)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        return lint_file(output, config=ManualArgs(regions=[region]))
    with tempfile.TemporaryDirectory(prefix="maas-template-") as folder:
        path = Path(folder) / "translated.json"
        path.write_text(text, encoding="utf-8")
        return lint_file(path, config=ManualArgs(regions=[region]))


def check(path: Path = DEFAULT_TEMPLATE, region: str = DEFAULT_REGION, output: Path | None = None) -> list[Match]:
    """Every cfn-lint finding on the translated template (errors, warnings and informational).

    The file linted, and kept at `output`, carries the API's checkov skips onto its stage.
    """
    template = load_template(path)
    return lint(carry_checkov_skips(_plain(template), translate(template, region)), region, output)


def errors(matches: list[Match]) -> list[Match]:
    return [m for m in matches if m.rule.severity == "error"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maas.template_check", description=__doc__.splitlines()[0])
    parser.add_argument("template", nargs="?", type=Path, default=DEFAULT_TEMPLATE)
    parser.add_argument("--region", default=DEFAULT_REGION)
    parser.add_argument("--output", type=Path, help="keep the translated CloudFormation JSON here (for checkov)")
    args = parser.parse_args(argv)

    try:
        matches = check(args.template, args.region, args.output)
    except Exception as error:  # the translator reports a bad SAM template by raising
        print(f"{args.template}: SAM transform failed: {error}", file=sys.stderr)
        return 2

    for match in matches:
        print(f"{match.rule.severity}: [{match.rule.id}] {match.message} ({match.filename}:{match.linenumber})")
    failed = errors(matches)
    summary = f"{len(matches)} finding(s), {len(failed)} error(s)"
    print(f"{args.template}: translated and linted with cfn-lint: {summary}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
