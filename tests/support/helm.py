"""A real helm binary for the chart tests, and helpers that render the chart.

`helm_binary()` runs tools/install-helm.sh once per test session (the result is cached)
and raises if that fails, so chart tests fail instead of skipping when helm is missing.
helm runs with its config, cache and data folders in a private temporary directory, so
a developer's repositories, plugins or registry logins cannot change what it renders.
"""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "kubetune"
INSTALL_SCRIPT = REPO_ROOT / "tools" / "install-helm.sh"
RELEASE_NAME = "kubetune"
RELEASE_NAMESPACE = "kubetune-system"
HELM_TIMEOUT_SECONDS = 120
INSTALL_TIMEOUT_SECONDS = 600

Obj = dict[str, Any]
"""One rendered Kubernetes object, as parsed from YAML."""


class HelmError(RuntimeError):
    """helm could not be installed, or a helm command failed."""


@functools.cache
def _helm_home() -> Path:
    return Path(tempfile.mkdtemp(prefix="kubetune-helm-home-"))


@functools.cache
def helm_binary() -> str:
    """Path of a working helm binary, installed by tools/install-helm.sh on first use."""
    try:
        result = subprocess.run(
            ["bash", str(INSTALL_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise HelmError(f"{INSTALL_SCRIPT} did not finish in {INSTALL_TIMEOUT_SECONDS}s") from exc
    path = result.stdout.strip()
    if result.returncode != 0 or not path:
        raise HelmError(f"{INSTALL_SCRIPT} failed (exit {result.returncode}); stderr:\n{result.stderr.strip()}")
    return path


def _helm_env() -> dict[str, str]:
    home = _helm_home()
    env = dict(os.environ)
    env.update(
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_DATA_HOME=str(home / "data"),
        # Rendering must never reach a cluster, whatever the developer's kubeconfig says.
        KUBECONFIG=str(home / "no-kubeconfig"),
    )
    return env


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    """Run helm with the given arguments; the caller checks returncode."""
    return subprocess.run(
        [helm_binary(), *args],
        capture_output=True,
        text=True,
        timeout=HELM_TIMEOUT_SECONDS,
        env=_helm_env(),
        check=False,
    )


def _values_args(values: Mapping[str, Any] | None, folder: Path) -> list[str]:
    if values is None:
        return []
    values_file = folder / "values.yaml"
    values_file.write_text(yaml.safe_dump(dict(values), sort_keys=False))
    return ["--values", str(values_file)]


def helm_lint(values: Mapping[str, Any] | None = None, *extra_args: str) -> subprocess.CompletedProcess[str]:
    """`helm lint --strict` of the chart with these values; the caller checks returncode."""
    with tempfile.TemporaryDirectory(prefix="kubetune-values-") as folder:
        return run_helm(
            "lint",
            "--strict",
            str(CHART_DIR),
            "--namespace",
            RELEASE_NAMESPACE,
            *_values_args(values, Path(folder)),
            *extra_args,
        )


def helm_template_text(values: Mapping[str, Any] | None = None, *extra_args: str) -> str:
    """The chart rendered by `helm template` as one YAML stream; raises HelmError on failure."""
    with tempfile.TemporaryDirectory(prefix="kubetune-values-") as folder:
        result = run_helm(
            "template",
            RELEASE_NAME,
            str(CHART_DIR),
            "--namespace",
            RELEASE_NAMESPACE,
            *_values_args(values, Path(folder)),
            *extra_args,
        )
    if result.returncode != 0:
        raise HelmError(f"helm template failed (exit {result.returncode}):\n{result.stderr.strip()}")
    return result.stdout


def helm_template(values: Mapping[str, Any] | None = None, *extra_args: str) -> list[Obj]:
    """The chart rendered by `helm template` and parsed: one dict per object, empty documents dropped."""
    documents = yaml.safe_load_all(helm_template_text(values, *extra_args))
    return [document for document in documents if document]


def helm_install_notes(values: Mapping[str, Any] | None = None) -> str:
    """NOTES.txt as `helm install` prints it, from a client-side dry run (no cluster needed)."""
    with tempfile.TemporaryDirectory(prefix="kubetune-values-") as folder:
        result = run_helm(
            "install",
            RELEASE_NAME,
            str(CHART_DIR),
            "--namespace",
            RELEASE_NAMESPACE,
            "--dry-run=client",
            *_values_args(values, Path(folder)),
        )
    if result.returncode != 0:
        raise HelmError(f"helm install --dry-run=client failed (exit {result.returncode}):\n{result.stderr}")
    _, marker, notes = result.stdout.partition("\nNOTES:\n")
    if not marker:
        raise HelmError("helm install --dry-run=client printed no NOTES section")
    return notes


# Reading the rendered objects.


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [obj for obj in objects if obj["kind"] == kind]


def the_one(objects: list[Obj], kind: str) -> Obj:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def is_user_role(role: Obj) -> bool:
    labels = role["metadata"].get("labels", {})
    return any(key.startswith("rbac.authorization.k8s.io/aggregate-to-") for key in labels)


def operator_roles(objects: list[Obj]) -> list[Obj]:
    """The Roles and ClusterRoles that the chart binds to the operator's ServiceAccount."""
    bound = {
        (binding["roleRef"]["kind"], binding["roleRef"]["name"], binding["metadata"].get("namespace"))
        for binding in of_kind(objects, "ClusterRoleBinding") + of_kind(objects, "RoleBinding")
    }
    return [
        role
        for role in of_kind(objects, "ClusterRole") + of_kind(objects, "Role")
        if (role["kind"], role["metadata"]["name"], role["metadata"].get("namespace")) in bound
    ]


def permissions(rules: list[Obj]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) triples that the rules grant."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


def grants_secrets(rule: Obj) -> bool:
    """Whether a rule reaches core Secrets, directly or through a wildcard."""
    groups = set(rule.get("apiGroups", []))
    resources = rule.get("resources", [])
    reaches_core = bool(groups & {"", "*"})
    names_secrets = any(res == "*" or res.split("/")[0] == "secrets" for res in resources)
    return (reaches_core and names_secrets) or "*" in rule.get("verbs", []) or "*" in groups
