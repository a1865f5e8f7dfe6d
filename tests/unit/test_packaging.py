"""The Lambda code is one namespaced package, maas_core, wherever it is imported (src/__init__.py):
the installed distribution, the sam build artifact (tests/integration/test_sam_build.py), the local
emulator's task root and the tests all say ``maas_core.shared`` / ``maas_core.functions``."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from maas.template import Template

ROOT = Path(__file__).resolve().parents[2]


def _package_folders() -> set[str]:
    """Every folder with an __init__.py, as the dotted name it installs under."""
    names = set()
    for top, name in (("src", "maas_core"), ("training", "training"), ("maas", "maas")):
        for init in (ROOT / top).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / top)
            if "__pycache__" not in relative.parts:
                names.add(".".join((name, *relative.parts)))
    return names


def test_every_package_folder_is_listed_for_the_wheel() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {"maas_core": "src"}
    # A folder missing here would import from the checkout and be absent from an installed wheel.
    assert set(config["packages"]) == _package_folders()


def test_the_wheel_installs_maas_core_and_no_generic_top_level_names(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("maas-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"maas_core", "training", "maas"}
    assert {"maas_core/__init__.py", "maas_core/shared/registry.py", "maas_core/functions/api/app.py"} <= set(names)


def test_every_handler_is_in_maas_core_and_names_a_file_of_src() -> None:
    template = Template(ROOT / "template.yaml")
    assert template.function_ids()
    for logical_id in template.function_ids():
        spec = template.function(logical_id)
        module, _, attribute = spec.handler.rpartition(".")
        assert module.startswith("maas_core.functions."), spec.handler
        source = spec.code_uri.joinpath(*module.split(".")[1:]).with_suffix(".py")
        assert source.is_file(), spec.handler
        assert f"def {attribute}(" in source.read_text()


def test_the_local_task_root_holds_only_maas_core_linked_to_src() -> None:
    spec = Template(ROOT / "template.yaml").function("ApiFunction")
    root = spec.task_root()
    assert [p.name for p in root.iterdir() if not p.name.startswith(".")] == ["maas_core"]
    assert (root / "maas_core").resolve() == (ROOT / "src").resolve()
    assert spec.task_root() == root  # the second call reuses the link
    # Without site-packages (so without the editable install), the task root alone finds the handler,
    # as /var/task does on Lambda.
    found = subprocess.run(
        [
            sys.executable,
            "-S",
            "-c",
            "import importlib.util as u; print(u.find_spec('maas_core.functions.api.app').origin)",
        ],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(found.stdout.strip()).resolve() == (ROOT / "src" / "functions" / "api" / "app.py").resolve()


def test_a_task_root_link_to_another_folder_is_replaced(tmp_path: Path) -> None:
    spec = Template(ROOT / "template.yaml").function("ApiFunction")
    root = spec.task_root()
    elsewhere = tmp_path / "old-src"
    elsewhere.mkdir()
    (root / "maas_core").unlink()
    (root / "maas_core").symlink_to(elsewhere, target_is_directory=True)
    assert spec.task_root() == root
    assert (root / "maas_core").resolve() == (ROOT / "src").resolve()
