"""Load test of the local API: concurrent clients asking two models for predictions.

    locust --headless -u 50 -r 50 -t 60s --host http://127.0.0.1:PORT -f bench/locustfile.py --csv OUT

``BENCH_LOCUST_PLAN`` names a JSON file of requests, ``[{"name", "path", "body"}, ...]``, one per
model (bench/loadtest.py writes it from the published models). Each client sends one of them, picked
at random, waits 0.5 to 1.5 s as a client between requests would, and counts anything but a 200
carrying predictions as a failure.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

from locust import HttpUser, between, task

PLAN: list[dict[str, Any]] = json.loads(Path(os.environ["BENCH_LOCUST_PLAN"]).read_text())


class ApiClient(HttpUser):
    wait_time = between(0.5, 1.5)

    @task
    def predict(self) -> None:
        request = random.choice(PLAN)  # noqa: S311 - load mix, not security
        with self.client.post(request["path"], json=request["body"], name=request["name"], catch_response=True) as r:
            if r.status_code != 200 or "predictions" not in r.text:
                r.failure(f"{r.status_code}: {r.text[:200]}")
