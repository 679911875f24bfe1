"""The release path: one version everywhere, and the names a release pushes are the names the chart pulls."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from kubetune import __version__
from kubetune.settings import Settings

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "release.yml"


def _release_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("release", REPO / "tools" / "release.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


release = _release_module()


def _workflow() -> dict[Any, Any]:
    # YAML 1.1 reads the key `on` as True.
    return yaml.safe_load(WORKFLOW.read_text())


def _chart_values() -> dict[str, Any]:
    return yaml.safe_load((REPO / "charts" / "kubetune" / "values.yaml").read_text())


def test_the_tree_is_ready_to_release_its_own_version() -> None:
    result = subprocess.run([sys.executable, "tools/release.py", "check", f"v{__version__}"],
                            cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert release.check(f"v{__version__}") == []


def test_a_version_bumped_in_one_place_only_is_named(tmp_path: Path) -> None:
    for part in ("pyproject.toml", "charts/kubetune/Chart.yaml", "operator/kubetune/__init__.py",
                 "operator/kubetune/settings.py"):
        (tmp_path / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / part, tmp_path / part)
    chart = tmp_path / "charts/kubetune/Chart.yaml"
    chart.write_text(chart.read_text().replace(f'appVersion: "{__version__}"', 'appVersion: "9.9.9"'))
    problems = release.check(f"v{__version__}", tmp_path)
    assert len(problems) == 1
    assert "Chart.yaml appVersion is '9.9.9'" in problems[0] and f"set it to '{__version__}'" in problems[0]


@pytest.mark.parametrize("tag", ["0.1.0", "v0.1", "release-1", "v1.2.3.4"])
def test_a_tag_that_is_not_a_version_is_refused(tag: str) -> None:
    problems = release.check(tag)
    assert problems and "is not of the form vMAJOR.MINOR.PATCH" in problems[0]


def test_release_runs_on_version_tags_and_checks_versions_before_publishing() -> None:
    workflow = _workflow()
    assert workflow[True]["push"]["tags"] == ["v*.*.*"]
    jobs = workflow["jobs"]
    check_steps = " ".join(str(step.get("run", "")) for step in jobs["check"]["steps"])
    assert 'tools/release.py check "${GITHUB_REF_NAME}"' in check_steps
    assert set(jobs["images"]["needs"]) == {"check", "tests"}
    assert "images" in jobs["chart"]["needs"]
    assert any(step.get("run") == "bash .ci/run" for step in jobs["tests"]["steps"])


def test_released_images_are_the_chart_defaults() -> None:
    """With the kubetune organisation as owner, what the workflow pushes is what `helm install` pulls."""
    jobs = _workflow()["jobs"]
    registry_line = next(step["run"] for step in jobs["check"]["steps"] if step.get("id") == "version")
    assert 'registry=ghcr.io/${OWNER,,}' in registry_line
    registry = "ghcr.io/kubetune"
    build = next(step for step in jobs["images"]["steps"] if "docker/build-push-action" in step.get("uses", ""))
    tag_template = build["with"]["tags"]
    pushed = {
        entry["name"]: tag_template.replace("${{ needs.check.outputs.registry }}", registry)
        .replace("${{ matrix.name }}", entry["name"])
        .replace("${{ needs.check.outputs.version }}", __version__)
        for entry in jobs["images"]["strategy"]["matrix"]["include"]
    }
    values = _chart_values()
    assert pushed == {
        "operator": f"{values['image']['repository']}:{__version__}",
        "trainer": f"{values['trainer']['image']['repository']}:{__version__}",
    }
    # The operator's own default (used outside the chart) names the same trainer image.
    assert Settings().trainer_image == pushed["trainer"]


def test_every_dockerfile_the_release_builds_exists_and_builds_from_the_root() -> None:
    jobs = _workflow()["jobs"]
    build = next(step for step in jobs["images"]["steps"] if "docker/build-push-action" in step.get("uses", ""))
    assert build["with"]["context"] == "."
    for entry in jobs["images"]["strategy"]["matrix"]["include"]:
        assert (REPO / entry["dockerfile"]).is_file(), entry["dockerfile"]


def test_make_images_builds_the_same_names_for_any_registry() -> None:
    result = subprocess.run(["make", "-n", "images", "REGISTRY=registry.example.com/ml"], cwd=REPO,
                            capture_output=True, text=True, check=True)
    assert f"-f operator/Dockerfile -t registry.example.com/ml/operator:{__version__} ." in result.stdout
    assert f"-f trainer-image/Dockerfile -t registry.example.com/ml/trainer:{__version__} ." in result.stdout
