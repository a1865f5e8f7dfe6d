"""training/requirements.txt, what the SageMaker toolkit installs over the job image, is the tested set:
every line an exact pin equal to constraints.txt's, every dependency of a listed package listed too
(so pip picks no version of its own in the image), and nothing the image itself must keep.

No TensorFlow import and no network: the packages' metadata in this venv says what they require.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from training.submit import REQUIREMENTS

ROOT = Path(__file__).resolve().parents[2]
# What the job imports beyond the image: Keras (the tested release), the ONNX export and runtime,
# scikit-learn (hold-out split, bundled data sets).
JOB_PACKAGES = ("keras", "tf2onnx", "onnx", "onnxruntime", "scikit-learn")
# The image's own: reinstalling TensorFlow from PyPI would replace the image's CUDA build.
IMAGE_OWNS = {"tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tf-nightly"}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)$")


def pins(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"{path.name}: {line!r} is not an exact pin (name==version)"
        name = canonicalize_name(match[1])
        assert found.get(name, match[2]) == match[2], f"{path.name}: {name} is pinned to two versions"
        found[name] = match[2]
    return found


def runtime_dependencies(name: str) -> set[str]:
    """What the installed distribution requires outside its extras, on this platform and Python."""
    needed = set()
    for line in importlib.metadata.requires(name) or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            needed.add(canonicalize_name(requirement.name))
    return needed


def test_every_requirement_is_pinned_to_the_version_constraints_txt_tests() -> None:
    required = pins(REQUIREMENTS)
    tested = pins(ROOT / "constraints.txt")
    differ = {name: (version, tested.get(name)) for name, version in required.items() if tested.get(name) != version}
    assert not differ, f"requirements.txt pin vs constraints.txt: {differ}"


def closure(packages: tuple[str, ...]) -> set[str]:
    """The packages and, transitively, everything they require (as installed in this venv)."""
    found: set[str] = set()
    todo = [canonicalize_name(p) for p in packages]
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo.extend(runtime_dependencies(name))
    return found


def test_the_job_packages_and_all_their_dependencies_are_pinned_and_nothing_else() -> None:
    required = pins(REQUIREMENTS)
    tested = pins(ROOT / "constraints.txt")
    expected = {name: tested[name] for name in closure(JOB_PACKAGES)}
    # On a change of constraints.txt (make lock), paste the lines this message prints.
    wanted = "\n".join(f"{name}=={version}" for name, version in sorted(expected.items()))
    assert required == expected, f"training/requirements.txt should pin exactly:\n{wanted}"


def test_nothing_the_image_must_keep_is_reinstalled() -> None:
    assert not IMAGE_OWNS & set(pins(REQUIREMENTS))


def test_the_installed_versions_are_the_pinned_ones() -> None:
    """The dev venv runs the same set the job will, so the unit tests test what ships."""
    installed = {name: importlib.metadata.version(name) for name in pins(REQUIREMENTS)}
    assert installed == pins(REQUIREMENTS)
