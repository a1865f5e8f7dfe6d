"""Read template.yaml the way the local runners need it: functions, their environment, API routes.

CloudFormation intrinsics are resolved for the local stack only: parameters take their defaults
(or overrides), pseudo parameters take local values, and !Sub / !Ref / !Join are expanded.
"""

from __future__ import annotations

import os
import re
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


class _Loader(yaml.SafeLoader):
    pass


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
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


def _route(method: str, path: str) -> Route:
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
        self.doc = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - SafeLoader subclass
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
        for scope in ("Parameters", logical_id):
            declared.update({k: str(v) for k, v in (self.env_vars.get(scope) or {}).items() if k in declared})
        routes = [
            _route(str(ev["Properties"]["Method"]), str(ev["Properties"]["Path"]))
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
