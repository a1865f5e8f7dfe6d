"""Where the developer CLI keeps its local state: one git-ignored folder in the project."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The folder holding template.yaml: MAAS_PROJECT_ROOT, else the nearest parent of the cwd."""
    if os.environ.get("MAAS_PROJECT_ROOT"):
        return Path(os.environ["MAAS_PROJECT_ROOT"]).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "template.yaml").is_file():
            return folder
    raise SystemExit("maas: no template.yaml found here or above; run from the project or set MAAS_PROJECT_ROOT")


def state_dir() -> Path:
    """Project-local state (embedded S3 objects, local /opt/ml trees); MAAS_STATE_DIR overrides."""
    path = Path(os.environ["MAAS_STATE_DIR"]) if os.environ.get("MAAS_STATE_DIR") else project_root() / ".maas"
    path.mkdir(parents=True, exist_ok=True)
    return path
