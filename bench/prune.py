"""What the deployment package carries but never uses at run time, and a pruned package to prove it.

The functions serve every API event in events/ and a batch file on the Lambda runtime's Python
(bench/touched.py) while every file they open, import or map is recorded. Each candidate rule below
drops a part of the package; a rule is kept only if none of its files was touched, so nothing here
rests on a guess. The pruned copy (optionally with its modules compiled, as the runtime cannot write
``__pycache__`` into /var/task) is measured, served again, and must answer every event the same way.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import BENCH, WORK
from bench.size import files, tree_bytes, zip_folder_bytes


@dataclass(frozen=True)
class Rule:
    pattern: str  # fnmatch on the path inside the package
    why: str
    keep: tuple[str, ...] = ()  # fnmatch patterns spared from ``pattern``

    def matches(self, relative: str) -> bool:
        return fnmatch.fnmatch(relative, self.pattern) and not any(fnmatch.fnmatch(relative, k) for k in self.keep)


RULES = (
    Rule(
        "onnxruntime/capi/libonnxruntime.so*",
        "ONNX Runtime's C/C++ API library; the Python binding links the runtime statically and never loads it",
    ),
    Rule("onnxruntime/transformers/*", "offline transformer-graph tooling, never imported by an InferenceSession"),
    Rule("onnxruntime/quantization/*", "offline quantisation tooling (training/ quantises; serving does not)"),
    Rule("onnxruntime/tools/*", "offline conversion tooling (symbolic shape inference: the part that wants sympy)"),
    Rule("onnxruntime/datasets/*", "sample models"),
    Rule(
        "botocore/data/*/*",
        "models of AWS services the functions never call (they call S3 and SQS)",
        keep=("botocore/data/s3/*", "botocore/data/sqs/*", "botocore/data/sts/*"),
    ),
    Rule("*/tests/*", "test suites of the dependencies"),
    Rule("numpy/f2py/*", "numpy's Fortran wrapper generator"),
    Rule("numpy/_core/_simd.*", "numpy's SIMD test module"),
    Rule("numpy/_pyinstaller/*", "PyInstaller hooks"),
    Rule("numpy/typing/*", "numpy's annotations for type checkers"),
    Rule("*.pyi", "type stubs"),
    Rule("google/*", "protobuf: ONNX Runtime's offline tools use it; an InferenceSession never imports it"),
    Rule("boto3/data/*", "boto3's resource models; the functions use clients"),
    Rule("pydantic/v1/*", "pydantic's v1 compatibility layer"),
)

# What a build step would run to compile the modules a cold start imports, and only those: import
# both handlers and everything their first requests import (boto3 clients, ONNX Runtime) with the
# package as the whole path (and the functions' variables set), then list the modules imported.
IMPORTED_MODULES = """
import sys
package = sys.argv[1]
sys.path.insert(0, package)
import functions.api.app, functions.batch.app, onnxruntime, boto3
boto3.client("s3"), boto3.client("sqs")
for module in list(sys.modules.values()):
    path = getattr(module, "__file__", None) or ""
    if path.startswith(package) and path.endswith(".py"):
        print(path)
"""


def plan_events(batch_key: str, etag: str, bucket: str) -> dict[str, dict[str, Any]]:
    """Every API Gateway event in events/ (model names as they are) and one SQS event for a batch file."""
    api = {}
    for path in sorted((BENCH.parent / "events").glob("*.json")):
        event = json.loads(path.read_text())
        if "httpMethod" in event:
            api[path.stem] = event
    sqs_body = {
        "Records": [{"s3": {"bucket": {"name": bucket}, "object": {"key": batch_key, "eTag": etag.strip('"')}}}]
    }
    batch = {
        "batch_file": {
            "Records": [
                {
                    "messageId": "maas-bench",
                    "receiptHandle": "maas-bench",
                    "body": json.dumps(sqs_body),
                    "attributes": {},
                    "messageAttributes": {},
                    "md5OfBody": "",
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:BatchQueue",
                    "awsRegion": "us-east-1",
                }
            ]
        }
    }
    return {"api": api, "batch": batch}


def touched(py312: str, package: Path, plan: Path, env: dict[str, str], log: Path) -> dict[str, Any]:
    out = log.with_suffix(".json")
    with log.open("w") as handle:
        subprocess.run(
            [py312, "-I", "-S", "-B", str(BENCH / "touched.py"), str(package), str(plan), str(out)],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=600,
            cwd=package,
        )
    return dict(json.loads(out.read_text()))


def analyse(package: Path, used: set[str]) -> dict[str, Any]:
    """Bytes each rule would drop, and whether serving touched any of them (then the rule is not kept)."""
    everything = {str(p.relative_to(package)): p.stat().st_size for p in files(package)}
    rules = []
    for rule in RULES:
        hit = [name for name in everything if rule.matches(name)]
        touched_hits = sorted(name for name in hit if name in used)
        rules.append(
            {
                "pattern": rule.pattern,
                "keep": list(rule.keep),
                "why": rule.why,
                "files": len(hit),
                "bytes": sum(everything[n] for n in hit),
                "touched": touched_hits[:5],
                "kept": bool(hit) and not touched_hits,
            }
        )
    untouched: dict[str, int] = {}
    for name, size in everything.items():
        if name not in used:
            top = name.split("/")[0]
            untouched[top] = untouched.get(top, 0) + size
    return {
        "files": len(everything),
        "touched_files": len(used & set(everything)),
        "touched_bytes": sum(everything[n] for n in used if n in everything),
        "untouched_bytes_by_entry": dict(sorted(untouched.items(), key=lambda item: -item[1])[:12]),
        "rules": rules,
    }


MODES = ("pruned", "compiled", "sourceless")


def pruned_copy(package: Path, analysis: dict[str, Any], py312: str, mode: str, env: dict[str, str]) -> Path:
    """A copy of the package without what the kept rules match. ``compiled``: the modules a cold start
    imports also get a .pyc (unchecked hash: trusted without comparing mtimes), as /var/task is read-only
    and the runtime would otherwise compile them on every cold start; ``sourceless``: those modules ship
    as the .pyc alone, in place of their .py (tracebacks then show no source lines)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    target = WORK / "sam" / mode / package.name
    shutil.rmtree(target.parent, ignore_errors=True)
    shutil.copytree(package, target, ignore=shutil.ignore_patterns("__pycache__"))
    kept = [r for r in RULES if any(a["kept"] and a["pattern"] == r.pattern for a in analysis["rules"])]
    for path in list(files(target)):
        if any(rule.matches(str(path.relative_to(target))) for rule in kept):
            path.unlink()
    if mode == "pruned":
        return target
    listed = subprocess.run(
        [py312, "-I", "-S", "-B", "-c", IMPORTED_MODULES, str(target)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    command = [py312, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", "-i", "-"]
    if mode == "sourceless":
        command.insert(-2, "-b")  # legacy layout: module.pyc beside (then instead of) module.py
    subprocess.run(command, input=listed, check=True, capture_output=True, text=True, timeout=600)
    if mode == "sourceless":
        for source in listed.split():
            Path(source).unlink()
    return target


def sizes(folder: Path) -> dict[str, int]:
    return {"unzipped_bytes": tree_bytes(folder), "zipped_bytes": zip_folder_bytes(folder)}
