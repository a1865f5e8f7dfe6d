"""Each local container gets a /tmp of its own that starts empty, as each Lambda execution environment
does: the template's /tmp paths (OPTIMIZED_MODEL_DIR, where verified model files are kept) point into
it, and it goes with the container."""

from __future__ import annotations

from pathlib import Path

from maas.lambda_runtime import LocalFunction
from maas.template import Template

ROOT = Path(__file__).resolve().parents[2]


def test_each_container_has_its_own_empty_tmp_removed_when_it_stops() -> None:
    spec = Template(ROOT / "template.yaml").function("ApiFunction")
    assert spec.environment["OPTIMIZED_MODEL_DIR"].startswith("/tmp/")  # what Lambda gets
    seen = []
    for _ in range(2):
        fn = LocalFunction(spec, {}).start()
        try:
            env = fn.environment()
            tmp = Path(env["TMPDIR"])
            assert tmp.is_dir() and not any(tmp.iterdir()) and tmp != Path("/tmp")
            assert env["OPTIMIZED_MODEL_DIR"] == str(tmp / "maas-models")
            seen.append(tmp)
        finally:
            fn.stop()
        assert not tmp.exists()
    assert seen[0] != seen[1]


def test_without_a_running_container_the_template_paths_are_kept() -> None:
    spec = Template(ROOT / "template.yaml").function("ApiFunction")
    env = LocalFunction(spec, {}).environment()
    assert "TMPDIR" not in env and env["OPTIMIZED_MODEL_DIR"] == spec.environment["OPTIMIZED_MODEL_DIR"]


def test_a_folder_given_with_env_vars_is_used_as_given(tmp_path: Path) -> None:
    chosen = tmp_path / "models"  # under /tmp on most machines, and still the user's own choice
    spec = Template(ROOT / "template.yaml", env_vars={"ApiFunction": {"OPTIMIZED_MODEL_DIR": str(chosen)}}).function(
        "ApiFunction"
    )
    fn = LocalFunction(spec, {}).start()
    try:
        env = fn.environment()
        assert env["OPTIMIZED_MODEL_DIR"] == str(chosen) and env["TMPDIR"] != str(tmp_path)
    finally:
        fn.stop()
