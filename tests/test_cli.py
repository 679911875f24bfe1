"""`kubetune` as a new user meets it: help, version, and one clear line (never a traceback) per mistake."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubetune.cli import main

REPO = Path(__file__).resolve().parents[1]


def kubetune(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubetune", *args], capture_output=True, text=True,
                          env=env if env is not None else dict(os.environ), cwd=cwd, timeout=timeout)


def no_cluster_env(home: Path) -> dict[str, str]:
    """No KUBECONFIG, no ~/.kube/config, not in a Pod."""
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    env["HOME"] = str(home)
    return env


def fake_kubeconfig(path: Path) -> Path:
    """A valid kubeconfig for a server nobody listens on: enough to get past the config check."""
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))
    return path


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something listens on, as another process's server would."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_no_arguments_prints_help_and_exits_2_rather_than_starting_the_operator(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: kubetune")
    for command in ("operator", "run", "crds"):
        assert re.search(rf"^\s+{command}\s", err, re.MULTILINE), command


def test_version_is_the_package_version() -> None:
    expected = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    result = kubetune("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"kubetune {expected}"


def test_the_operator_image_names_its_command() -> None:
    """With no arguments `kubetune` only prints help: the image must say `operator` (the chart's is tested too)."""
    text = (REPO / "operator" / "Dockerfile").read_text()
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (.+)$", text, re.MULTILINE).group(1))  # type: ignore[union-attr]
    cmd = json.loads(re.search(r"^CMD (.+)$", text, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert [*entrypoint, *cmd] == ["kubetune", "operator"]


def test_operator_without_a_cluster_says_what_is_missing_once_and_exits(tmp_path: Path) -> None:
    # Before: kopf's login retry loop, a traceback every 60 s, forever (the timeout would fire).
    result = kubetune("operator", env=no_cluster_env(tmp_path), timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("kubetune operator: error: no Kubernetes cluster to talk to: KUBECONFIG is not set")
    assert f"{tmp_path}/.kube/config does not exist" in line
    assert "KUBERNETES_SERVICE_HOST is not set" in line
    assert "set KUBECONFIG to a kubeconfig file" in line and "run the operator in the cluster" in line


def test_operator_with_a_broken_kubeconfig_names_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("apiVersion: v1\nkind: Config\nclusters: []\n")
    env = {**no_cluster_env(tmp_path), "KUBECONFIG": str(broken)}
    result = kubetune("operator", env=env, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"cannot load the kubeconfig {broken} (from KUBECONFIG): " in result.stderr
    assert "current-context" in result.stderr  # the loader's own reason is kept


@pytest.mark.parametrize(("variable", "serves"), [("KUBETUNE_METRICS_PORT", "metrics"),
                                                  ("KUBETUNE_HEALTH_PORT", "the liveness endpoint /healthz")])
def test_operator_on_a_taken_port_names_the_port_and_the_variable(tmp_path: Path, taken_port: int, variable: str,
                                                                  serves: str) -> None:
    env = {**no_cluster_env(tmp_path), "KUBECONFIG": str(fake_kubeconfig(tmp_path / "kubeconfig")),
           "KUBETUNE_METRICS_PORT": "0", "KUBETUNE_HEALTH_PORT": "0", variable: str(taken_port)}
    result = kubetune("operator", env=env, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if "error" in line]
    assert f"cannot serve {serves} on port {taken_port}" in line and f"set {variable} to a free port" in line


def test_a_bad_setting_names_the_variable(tmp_path: Path) -> None:
    env = {**no_cluster_env(tmp_path), "KUBETUNE_METRICS_PORT": "eighty"}
    result = kubetune("operator", env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "KUBETUNE_METRICS_PORT must be an integer, got 'eighty'" in result.stderr


def test_crds_out_on_a_file_or_an_unwritable_path_is_one_line(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    existing = tmp_path / "crds.yaml"
    existing.write_text("mine\n")
    assert main(["crds", "--out", str(existing)]) == 2
    err = capsys.readouterr().err
    assert err == (f"kubetune crds: error: --out {existing} is a file: --out takes a folder (created when "
                   "missing); each CRD is written to its own file in it\n")
    assert existing.read_text() == "mine\n"

    under_a_file = existing / "crds"
    assert main(["crds", "--out", str(under_a_file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kubetune crds: error: cannot write the CRDs to {under_a_file}: Not a directory")


def test_crds_out_writes_into_a_new_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "new" / "crds"
    assert main(["crds", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (REPO / "crds").iterdir())
    assert f"wrote {out}" in capsys.readouterr().out


def test_run_with_an_unwritable_workdir_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be\n")
    manifest = tmp_path / "job.yaml"
    manifest.write_text(
        "apiVersion: kubetune.io/v1alpha1\nkind: TuningJob\nmetadata: {name: demo}\nspec:\n"
        "  baseModel: {scratch: {}}\n"
        "  datasets: {train: [{source: {configMap: {name: rows, key: rows.jsonl}}}]}\n"
        "  output: {pvc: {claimName: models, path: demo}}\n"
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: rows}\ndata: {rows.jsonl: '{\"text\": \"hi\"}'}\n")
    code = main(["run", "-f", str(manifest), "--workdir", str(blocker / "out"), "--dry-run", "--plain"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"kubetune run: error: {blocker / 'out'}" in err and "Not a directory" in err
    assert "--workdir" in err
