"""Deployment size: the ``sam build`` package of ApiFunction, unzipped and zipped, against TensorFlow's install.

``sam build`` runs into ``.maas/bench/sam`` (its own build and cache folders, ``--cached``: a rerun with
nothing changed takes seconds) with the python3.12 the Makefile's ``build`` target finds. Sizes are
bytes of regular files (MB = 10^6 bytes); zipped is a deflate zip of the folder, as ``sam package``
uploads it. TensorFlow's install is ``pip install tensorflow-cpu``: the files every distribution in its
dependency closure recorded at install time (what a container image would carry).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.common import ROOT, WORK, Runtime, say

SAM = WORK / "sam"
RUNTIME_DIR = WORK / "runtime-py312"


def python312() -> str | None:
    """The Makefile's choice: pyenv's newest 3.12, else python3.12 on PATH."""
    pyenv = shutil.which("pyenv")
    root = subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout.strip() if pyenv else ""
    candidates = sorted(glob.glob(f"{root}/versions/3.12*/bin/python3.12")) if root else []
    found = candidates[-1] if candidates else shutil.which("python3.12")
    if found and subprocess.run([found, "-V"], capture_output=True).returncode == 0:
        return found
    return None


def sam_build(py312: str, log: Path) -> Path:
    """``sam build`` of template.yaml without a container; returns ApiFunction's package folder."""
    env = {**os.environ, "PATH": f"{Path(py312).parent}:{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env["SAM_CLI_TELEMETRY"] = "0"
    command = [str(Path(sys.executable).parent / "sam"), "build", "--template", str(ROOT / "template.yaml")]
    command += ["--build-dir", str(SAM / "build"), "--cache-dir", str(SAM / "cache"), "--cached"]
    with log.open("w") as handle:
        code = subprocess.call(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, timeout=900)
    if code != 0:
        raise RuntimeError(f"sam build failed (exit {code}); see {log}")
    # A function of a nested application (templates/serving.yaml) builds under build/<App>/<Function>.
    (package,) = (SAM / "build").glob("*/ApiFunction")
    return package


def artifact_runtime(py312: str, package: Path) -> Runtime:
    """The Lambda python3.12 runtime, locally: its interpreter without site-packages, the package as
    /var/task and awslambdaric (the runtime client Lambda's own images run) beside it."""
    marker = RUNTIME_DIR / ".installed"
    if not marker.exists():
        shutil.rmtree(RUNTIME_DIR, ignore_errors=True)
        command = [py312, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target"]
        command += [str(RUNTIME_DIR), "-c", str(ROOT / "constraints.txt"), "awslambdaric"]
        subprocess.run(command, check=True, capture_output=True, timeout=600)
        marker.touch()
    version = subprocess.run([py312, "-c", "import platform; print(platform.python_version())"], capture_output=True)
    label = f"python {version.stdout.decode().strip()} + sam build package"
    # -B: Lambda's /var/task is read-only, so the runtime compiles every module it imports on each cold start.
    return Runtime(label, (py312, "-S", "-B"), package, (RUNTIME_DIR,))


def files(folder: Path) -> Iterator[Path]:
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            yield path


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in files(folder))


def zipped_bytes(paths: list[tuple[Path, str]]) -> int:
    """Size of a deflate zip (level 6, zip's default) of (file, name in archive) pairs."""
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "package.zip"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
            for path, name in paths:
                archive.write(path, name)
        return target.stat().st_size


def zip_folder_bytes(folder: Path) -> int:
    return zipped_bytes([(p, str(p.relative_to(folder))) for p in files(folder)])


def by_entry(folder: Path, top: int = 12) -> dict[str, int]:
    """Bytes per top-level entry (package, .dist-info, module), largest first."""
    sizes: dict[str, int] = {}
    for path in files(folder):
        entry = path.relative_to(folder).parts[0]
        sizes[entry] = sizes.get(entry, 0) + path.stat().st_size
    ranked = sorted(sizes.items(), key=lambda item: -item[1])
    return dict(ranked[:top])


def closure(root: str) -> list[metadata.Distribution]:
    """``root`` and every distribution it requires (no extras), as installed here."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: dict[str, metadata.Distribution] = {}
    todo = [root]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        dist = metadata.distribution(name)
        seen[name] = dist
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return sorted(seen.values(), key=lambda d: str(d.metadata["Name"]).lower())


def tensorflow_install() -> dict[str, Any]:
    """Bytes of ``pip install tensorflow-cpu`` here, unzipped and zipped (the zip is cached per versions)."""
    dists = closure("tensorflow-cpu")
    paths: list[tuple[Path, str]] = []
    per_dist: dict[str, int] = {}
    for dist in dists:
        name = f"{dist.metadata['Name']}=={dist.version}"
        per_dist[name] = 0
        for record in dist.files or []:
            path = Path(str(record.locate()))
            if path.is_file() and not path.is_symlink():
                paths.append((path, str(record)))
                per_dist[name] += path.stat().st_size
    key = hashlib.sha256(" ".join(per_dist).encode()).hexdigest()[:16]
    cache = WORK / f"tensorflow-install-{key}.json"
    if cache.exists():
        zipped = int(json.loads(cache.read_text())["zipped_bytes"])
    else:
        say("   zipping TensorFlow's install once (cached per versions in .maas/bench) ...")
        zipped = zipped_bytes(paths)
        cache.write_text(json.dumps({"zipped_bytes": zipped, "distributions": list(per_dist)}))
    ranked = dict(sorted(per_dist.items(), key=lambda item: -item[1])[:8])
    return {
        "what": "pip install tensorflow-cpu: the distribution and its dependency closure",
        "distributions": len(dists),
        "unzipped_bytes": sum(per_dist.values()),
        "zipped_bytes": zipped,
        "largest": ranked,
    }


def package_sizes(package: Path) -> dict[str, Any]:
    return {
        "path": str(package.relative_to(ROOT)) if package.is_relative_to(ROOT) else str(package),
        "unzipped_bytes": tree_bytes(package),
        "zipped_bytes": zip_folder_bytes(package),
        "largest": by_entry(package),
    }
