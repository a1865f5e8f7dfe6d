"""The floor of any Python function: a handler that imports nothing and answers 200 at once.

Its cold start is what the emulator, the Python interpreter and awslambdaric cost before any
handler code runs; every other handler's cold start is this plus its own work.
"""

from typing import Any


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": "{}"}
