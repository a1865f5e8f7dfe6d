"""`maas bench`: runs the benchmark harness (``python -m bench``, its statistics in bench/stats.py).

The harness measures in child processes that import ``bench`` from the project root, so it runs there.
"""

from __future__ import annotations

import subprocess
import sys

from maas.paths import project_root


def main(argv: list[str] | None = None) -> int:
    """Run the harness from the project root; ``argv`` as ``python -m bench --help`` lists."""
    args = list(sys.argv[1:] if argv is None else argv)
    return subprocess.call([sys.executable, "-m", "bench", *args], cwd=project_root())
