"""Read template.yaml the way the local runners need it: functions, their environment, API routes.

template.yaml nests one application per concern (templates/*.yaml, AWS::Serverless::Application
with a local Location): ``load_stack`` reads them as the one template CloudFormation deploys, each
child's parameters replaced by what the parent passes, so functions, queues and buckets are found
by their logical ids wherever they live. CloudFormation intrinsics are resolved for the local
stack only: parameters take their defaults (or overrides), pseudo parameters take local values,
and !Sub / !Ref / !Join are expanded.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

LOCAL_PSEUDO = {
    "AWS::StackName": "maas-local",
    "AWS::AccountId": "123456789012",
    "AWS::Region": "us-east-1",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}


# The C parser where PyYAML has one: the five templates parse in a third of the time.
class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    pass


def _intrinsic(loader: Any, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_Loader.add_multi_constructor("!", _intrinsic)


# --- nested applications --------------------------------------------------------------------------

_APPLICATION = "AWS::Serverless::Application"
# Properties that name a local file relative to the template that holds them.
_LOCAL_PATHS = ("CodeUri", "ContentUri", "DefinitionUri")
_PLACEHOLDER = re.compile(r"\$\{([^}!]+)\}")


def load_yaml(path: Path) -> dict[str, Any]:
    """A template with its short-form tags (!Ref, !Sub, ...) in their long form."""
    doc: dict[str, Any] = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    return doc


def nested_locations(doc: dict[str, Any], folder: Path) -> dict[str, Path]:
    """The applications of a template whose Location is a local file, by logical id."""
    return {
        logical_id: (folder / resource["Properties"]["Location"]).resolve()
        for logical_id, resource in (doc.get("Resources") or {}).items()
        if resource.get("Type") == _APPLICATION
        and isinstance(resource.get("Properties", {}).get("Location"), str)
        and "://" not in resource["Properties"]["Location"]
    }


def stack_files(path: Path) -> list[Path]:
    """A template and every template nested under it, parents first."""
    files = [path.resolve()]
    for child in nested_locations(load_yaml(path), path.parent).values():
        files += stack_files(child)
    return files


def sub_text(value: Any) -> str | None:
    """`value` written inside an Fn::Sub string, or None when only Fn::Sub's variable map can carry it."""
    if isinstance(value, str):
        return None if "${" in value else value
    if isinstance(value, (int, float)):  # numbers and booleans as their JSON text
        return json.dumps(value)
    if isinstance(value, dict) and len(value) == 1:
        ((function, argument),) = value.items()
        if function == "Ref" and isinstance(argument, str):
            return f"${{{argument}}}"
        if function == "Fn::GetAtt" and isinstance(argument, list):
            return f"${{{'.'.join(argument)}}}"
        if function == "Fn::Sub" and isinstance(argument, str):
            return argument
    return None


def _fill_sub(argument: Any, values: Callable[[str], Any]) -> Any:
    """An Fn::Sub with each ${Name} that `values` knows replaced by its value (inline, or in the map)."""
    text, variables = (argument, {}) if isinstance(argument, str) else (argument[0], dict(argument[1]))

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        value = None if name in variables else values(name)
        if value is None:
            return match.group(0)
        written = sub_text(value)
        if written is None:
            variables[name] = value
            return match.group(0)
        return written

    text = _PLACEHOLDER.sub(fill, text)
    return {"Fn::Sub": [text, variables] if variables else text}


def substitute(node: Any, values: Callable[[str], Any], outputs: Callable[[str, str], Any]) -> Any:
    """`node` with every Ref to a name `values` knows, and every GetAtt <App>.Outputs.<Name> `outputs`
    knows, replaced by that value (None from either: left as it is)."""
    if isinstance(node, list):
        return [substitute(v, values, outputs) for v in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        ((function, argument),) = node.items()
        if function == "Ref" and isinstance(argument, str) and values(argument) is not None:
            return copy.deepcopy(values(argument))
        if function == "Fn::GetAtt" and isinstance(argument, list) and str(argument[1]).startswith("Outputs."):
            found = outputs(argument[0], argument[1].removeprefix("Outputs."))
            if found is not None:
                return copy.deepcopy(found)
        if function == "Fn::Sub":

            def named(name: str) -> Any:
                app, _, output = name.partition(".Outputs.")
                return outputs(app, output) if output else values(name)

            filled = _fill_sub(argument, named)
            argument = filled["Fn::Sub"]
            if isinstance(argument, list):
                argument = [argument[0], substitute(argument[1], values, outputs)]
            return {"Fn::Sub": argument}
    return {k: substitute(v, values, outputs) for k, v in node.items()}


def _rebase(resource: dict[str, Any], child: Path, root: Path) -> None:
    """Point a child's local paths (CodeUri: ../src/) at the same files from the root's folder."""
    props = resource.get("Properties") or resource
    for prop in _LOCAL_PATHS:
        value = props.get(prop)
        if isinstance(value, str) and "://" not in value:
            relative = os.path.relpath(child.parent / value, root)
            props[prop] = relative + ("/" if value.endswith("/") else "")


def _merge(into: dict[str, Any], section: str, found: dict[str, Any], origin: Path) -> None:
    """Add a child's Resources or Conditions to the stack; a name may mean one thing only."""
    merged = into.setdefault(section, {})
    for name, value in found.items():
        if name in merged and (section == "Resources" or merged[name] != value):
            raise SystemExit(f"maas: {origin} redefines {section[:-1].lower()} {name!r}")
        merged[name] = value


def load_stack(path: Path, load: Callable[[Path], dict[str, Any]] = load_yaml) -> dict[str, Any]:
    """template.yaml and its nested applications as the one template CloudFormation deploys.

    Each child's Refs (and ${Names} of its Subs) to its parameters become what the parent passes
    (ARCHITECTURE.md, "The template by concern"), its resources and conditions join the parent's,
    its local paths are rebased on the parent's folder, and the parent's GetAtt
    <App>.Outputs.<Name> (a sibling's too) become that output's value. Children inherit no
    Globals: those they declare must all be the same, and are the stack's. `load` reads one file
    (cfn-lint's loader for template_check, this module's for the local runners).
    """
    root = path.parent.resolve()
    doc = copy.deepcopy(load(path))
    outputs: dict[str, dict[str, Any]] = {}
    for app, location in nested_locations(doc, path.parent).items():
        child = load_stack(location, load)
        passed = doc["Resources"].pop(app)["Properties"].get("Parameters") or {}
        given = _parameters(passed, child.pop("Parameters", {}) or {}, f"{path.name} -> {location.name}")
        child = substitute(child, given.get, lambda _app, _name: None)
        for resource in child.get("Resources", {}).values():
            _rebase(resource, location, root)
        _merge(doc, "Resources", child.get("Resources") or {}, location)
        _merge(doc, "Conditions", child.get("Conditions") or {}, location)
        if "Globals" in child:
            _rebase(child["Globals"].get("Function", {}), location, root)
            if doc.setdefault("Globals", child["Globals"]) != child["Globals"]:
                raise SystemExit(f"maas: {location} has Globals unlike its siblings'")
        outputs[app] = {name: spec["Value"] for name, spec in (child.get("Outputs") or {}).items()}

    def output(app: str, name: str) -> Any:
        if app in outputs and name not in outputs[app]:
            raise SystemExit(f"maas: {path.name} reads {app}.Outputs.{name}, which {app} does not declare")
        return outputs.get(app, {}).get(name)

    # A sibling's output may name another's (Monitoring's ApiName is Serving's): repeat until none is left.
    for _ in range(len(outputs) + 1):
        doc = substitute(doc, lambda _name: None, output)
    return doc


def _parameters(passed: dict[str, Any], declared: dict[str, Any], where: str) -> dict[str, Any]:
    """Each parameter a child declares -> what its parent passes, else its default. CloudFormation
    refuses a parameter the child does not declare, and one without a default that is not passed."""
    unknown = sorted(set(passed) - set(declared))
    missing = sorted(set(declared) - set(passed) - {name for name, spec in declared.items() if "Default" in spec})
    if unknown or missing:
        raise SystemExit(
            f"maas: {where}: parameters passed but not declared {unknown}, declared but not passed {missing}"
        )
    return {name: passed.get(name, declared[name].get("Default")) for name in declared}


@dataclass
class Route:
    method: str
    path: str
    pattern: re.Pattern[str]
    params: list[str]

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.method not in (method, "ANY"):
            return None
        # The whole path or nothing: "$" would also accept a trailing newline ("/health\n").
        found = self.pattern.fullmatch(path)
        return found.groupdict() if found else None


@dataclass
class FunctionSpec:
    logical_id: str
    handler: str
    code_uri: Path
    runtime: str
    timeout: int
    memory_mb: int
    environment: dict[str, str]
    routes: list[Route] = field(default_factory=list)
    queues: list[tuple[str, int]] = field(default_factory=list)  # (queue logical id, batch size)
    env_refs: dict[str, str] = field(default_factory=dict)  # variable -> logical id its !Ref names
    overridden: set[str] = field(default_factory=set)  # variables --env-vars set, not the template
    project_root: Path | None = None  # the folder of template.yaml (task roots go in its .maas/)

    def task_root(self) -> Path:
        """The folder that is Lambda's /var/task for this function (src/__init__.py).

        A handler whose first name is a module or folder of CodeUri runs from CodeUri itself.
        Otherwise CodeUri *is* that package: src/Makefile copies src/ into the artifact as
        maas_core/, so the local task root is a folder under .maas/task-roots whose one entry,
        maas_core, links to src/ (made on first use, replaced atomically if it points elsewhere).
        """
        package = self.handler.split(".", 1)[0]
        if (self.code_uri / package).is_dir() or (self.code_uri / f"{package}.py").is_file():
            return self.code_uri
        root = (self.project_root or self.code_uri.parent) / ".maas" / "task-roots" / package
        link = root / package
        if not (link.is_symlink() and link.resolve() == self.code_uri):
            root.mkdir(parents=True, exist_ok=True)
            staged = root / f".{package}.{os.getpid()}"
            staged.unlink(missing_ok=True)
            staged.symlink_to(self.code_uri, target_is_directory=True)
            os.replace(staged, link)
        return root


def route(method: str, path: str) -> Route:
    params: list[str] = []
    regex = r"\A"
    for part in re.split(r"(\{[^}]+\})", path):
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            greedy = name.endswith("+")
            name = name.rstrip("+")
            params.append(name)
            regex += f"(?P<{name}>{'.+' if greedy else '[^/]+'})"
        else:
            regex += re.escape(part)
    return Route(method=method.upper(), path=path, pattern=re.compile(regex + r"\Z"), params=params)


class Template:
    def __init__(
        self, path: Path, overrides: dict[str, str] | None = None, env_vars: dict[str, dict[str, str]] | None = None
    ) -> None:
        """``env_vars`` follows ``sam local --env-vars``: {"Parameters": {...}, "<FunctionId>": {...}}
        overrides variables the template declares, for every function or for one."""
        self.env_vars = env_vars or {}
        self.path = path
        self.root = path.parent
        self.doc = load_stack(path)
        self.parameters = {
            name: str(spec.get("Default", "")) for name, spec in (self.doc.get("Parameters") or {}).items()
        }
        self.parameters.update(overrides or {})
        self.resources: dict[str, Any] = self.doc.get("Resources") or {}

    # -- intrinsics ----------------------------------------------------------------------
    def _ref(self, name: str) -> str:
        if name in LOCAL_PSEUDO:
            return LOCAL_PSEUDO[name]
        if name in self.parameters:
            return self.parameters[name]
        resource = self.resources.get(name)
        if resource and "BucketName" in (resource.get("Properties") or {}):
            return self.resolve(resource["Properties"]["BucketName"])
        return f"local-{name}"

    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                return re.sub(
                    r"\$\{([^}!]+)\}",
                    lambda m: str(
                        self.resolve(variables[m.group(1)]) if m.group(1) in variables else self._ref(m.group(1))
                    ),
                    text,
                )
            if key == "Fn::Join":
                return str(arg[0]).join(str(self.resolve(v)) for v in arg[1])
            if key == "Fn::GetAtt":
                return f"local-{'.'.join(arg)}"
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value

    # -- functions -----------------------------------------------------------------------
    def function_ids(self) -> list[str]:
        return [k for k, v in self.resources.items() if v.get("Type") == "AWS::Serverless::Function"]

    def function(self, logical_id: str) -> FunctionSpec:
        resource = self.resources.get(logical_id)
        if not resource or resource.get("Type") != "AWS::Serverless::Function":
            raise SystemExit(f"maas: template has no function {logical_id!r}; it has {', '.join(self.function_ids())}")
        glob = ((self.doc.get("Globals") or {}).get("Function")) or {}
        props = {**glob, **(resource.get("Properties") or {})}
        env = {
            **(((glob.get("Environment") or {}).get("Variables")) or {}),
            **((((resource.get("Properties") or {}).get("Environment") or {}).get("Variables")) or {}),
        }
        declared = {k: str(self.resolve(v)) for k, v in env.items()}
        overridden: set[str] = set()
        for scope in ("Parameters", logical_id):
            given = {k: str(v) for k, v in (self.env_vars.get(scope) or {}).items() if k in declared}
            declared.update(given)
            overridden.update(given)
        routes = [
            route(str(ev["Properties"]["Method"]), str(ev["Properties"]["Path"]))
            for ev in (props.get("Events") or {}).values()
            if ev.get("Type") == "Api"
        ]
        queues = [
            (self._logical_id(ev["Properties"]["Queue"]), int(ev["Properties"].get("BatchSize", 10)))
            for ev in (props.get("Events") or {}).values()
            if ev.get("Type") == "SQS"
        ]
        return FunctionSpec(
            logical_id=logical_id,
            handler=str(props["Handler"]),
            code_uri=(self.root / str(props.get("CodeUri", "."))).resolve(),
            project_root=self.root.resolve(),
            overridden=overridden,
            runtime=str(props.get("Runtime", "")),
            timeout=int(self.resolve(props.get("Timeout", 3))),
            memory_mb=int(self.resolve(props.get("MemorySize", 128))),
            environment=declared,
            routes=routes,
            queues=queues,
            env_refs={
                k: str(v["Ref"]) for k, v in env.items() if isinstance(v, dict) and str(v.get("Ref")) in self.resources
            },
        )

    @staticmethod
    def _logical_id(value: Any) -> str:
        """The resource a !Ref or !GetAtt X.Arn points at."""
        if isinstance(value, dict) and "Ref" in value:
            return str(value["Ref"])
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            return str(value["Fn::GetAtt"][0])
        raise SystemExit(f"maas: cannot tell which resource {value!r} names")

    def queues(self) -> dict[str, dict[str, Any]]:
        """SQS queues by logical id: their visibility timeout and where redrive sends failures."""
        found = {}
        for logical_id, resource in self.resources.items():
            if resource.get("Type") != "AWS::SQS::Queue":
                continue
            props = resource.get("Properties") or {}
            redrive = props.get("RedrivePolicy") or {}
            found[logical_id] = {
                "visibility_timeout": int(self.resolve(props.get("VisibilityTimeout", 30))),
                "dead_letter": self._logical_id(redrive["deadLetterTargetArn"]) if redrive else None,
                "max_receive_count": int(redrive.get("maxReceiveCount", 0)) if redrive else 0,
            }
        return found

    def bucket_notifications(self) -> list[dict[str, Any]]:
        """S3 -> SQS notifications: bucket name, queue logical id, events, key prefix."""
        found = []
        for resource in self.resources.values():
            props = resource.get("Properties") or {}
            if resource.get("Type") != "AWS::S3::Bucket" or "BucketName" not in props:
                continue
            for config in (props.get("NotificationConfiguration") or {}).get("QueueConfigurations", []):
                rules = ((config.get("Filter") or {}).get("S3Key") or {}).get("Rules", [])
                prefix = next((r["Value"] for r in rules if r.get("Name", "").lower() == "prefix"), "")
                found.append(
                    {
                        "bucket": str(self.resolve(props["BucketName"])),
                        "queue": self._logical_id(config["Queue"]),
                        "events": [config["Event"]],
                        "prefix": prefix,
                    }
                )
        return found

    def bucket_names(self) -> list[str]:
        return [
            str(self.resolve(r["Properties"]["BucketName"]))
            for r in self.resources.values()
            if r.get("Type") == "AWS::S3::Bucket" and "BucketName" in (r.get("Properties") or {})
        ]

    def api_stage(self) -> str:
        for resource in self.resources.values():
            if resource.get("Type") == "AWS::Serverless::Api":
                return str(self.resolve(resource.get("Properties", {}).get("StageName", "local")))
        return "local"
