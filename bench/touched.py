"""Which files of a deployment package a function reads when it serves: run on the Lambda runtime's Python.

    python3.12 -I -S -B bench/touched.py PACKAGE PLAN.json OUT.json

Standard library only: the package is the whole path, as /var/task is on Lambda. Every API event of
the plan goes to ApiFunction's handler and every SQS event to BatchFunction's; a file counts as
touched when Python opened it, imported it, or mapped it (shared libraries, from /proc/self/maps).
The answers' status codes come back too, so a pruned package can be checked to answer the same.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

opened: set[str] = set()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and args and isinstance(args[0], str):
        opened.add(args[0])


class Context:
    def __init__(self, name: str) -> None:
        self.function_name = name
        self.memory_limit_in_mb = 1024
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
        self.aws_request_id = "maas-bench-touched"


def main(package: str, plan_path: str, out: str) -> int:
    with open(plan_path) as handle:
        plan = json.load(handle)
    sys.path.insert(0, package)  # /var/task
    sys.addaudithook(_audit)
    statuses: dict[str, Any] = {}
    from functions.api import app as api

    for name, event in plan["api"].items():
        statuses[name] = api.lambda_handler(event, Context("ApiFunction"))["statusCode"]
    from functions.batch import app as batch

    for name, event in plan["batch"].items():
        try:
            response = batch.lambda_handler(event, Context("BatchFunction"))
            statuses[name] = f"{len(response.get('batchItemFailures', []))} failed"
        except Exception as exc:  # Powertools raises when every record failed: that is an answer too
            statuses[name] = f"raised {type(exc).__name__}"
    with open("/proc/self/maps") as maps:
        mapped = {line.split(maxsplit=5)[5].strip() for line in maps if len(line.split(maxsplit=5)) == 6}
    imported = {str(getattr(m, "__file__", None) or "") for m in list(sys.modules.values())}
    root = os.path.realpath(package) + os.sep
    real = {os.path.realpath(p) for p in opened | imported | mapped if p}
    touched = sorted(p[len(root) :] for p in real if p.startswith(root))
    with open(out, "w") as handle:
        json.dump({"touched": touched, "statuses": statuses}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
