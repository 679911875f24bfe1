"""Where a local run keeps things, and how a Pod's config and environment become a process's.

The builders resolve a TuningJob into the same TrainerConfig and Job the cluster gets; this
module swaps the Pod's mount folders for local ones (PVC claims -> folders, ConfigMaps ->
folders holding their keys), points the work folder and result file at the run folder, and
fills the container's secretKeyRef env vars from the Secrets in the files (or the environment).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetune.api import Mounts, TrainerConfig, ValidatorConfig
from kubetune.api.contract import HF_TOKEN_ENV
from kubetune.api.run import RUNS_DIR
from kubetune.builders import WorkVolumePlan, parse_pvc_path
from kubetune.local.manifests import Manifests

# Container env vars that name paths inside the image: a local process keeps the user's own.
_CONTAINER_ONLY_ENV = frozenset({"HF_HOME"})
# Secret-fed variables that may come from the user's environment when no Secret is in the files.
_ENV_FALLBACK = frozenset({HF_TOKEN_ENV})
DEFAULT_WORKDIR = "./kubetune-out"


def parse_volume(text: str) -> tuple[str, Path]:
    """`CLAIM=PATH` (argparse type of --volume)."""
    claim, sep, path = text.partition("=")
    if not sep or not claim or not path:
        raise argparse.ArgumentTypeError(f"expected CLAIM=PATH, got {text!r}")
    return claim, Path(path).expanduser().resolve()


@dataclass(frozen=True)
class Workspace:
    """The folders of a local run under --workdir, and the --volume mapping of PVC claims."""

    root: Path
    volumes: Mapping[str, Path] = field(default_factory=dict)

    def claim_dir(self, claim: str) -> Path:
        return self.volumes.get(claim) or self.root / "volumes" / claim

    def job_dir(self, namespace: str, name: str) -> Path:
        """Stable per job, so a second run finds the first one's checkpoints."""
        return self.root / namespace / name

    def dataset_dir(self, namespace: str, name: str) -> Path:
        return self.root / namespace / "datasets" / name

    def config_map_dir(self, namespace: str, name: str) -> Path:
        return self.root / namespace / "configmaps" / name


def local_mounts(mounts: Mounts, namespace: str, workspace: Workspace, manifests: Manifests) -> Mounts:
    """The same claims and ConfigMaps, at local folders; ConfigMap keys are written out as files."""
    config_maps: dict[str, str] = {}
    for name in mounts.config_maps:
        folder = workspace.config_map_dir(namespace, name)
        folder.mkdir(parents=True, exist_ok=True)
        for key, value in manifests.config_maps.get((namespace, name), {}).items():
            (folder / key).write_text(value, encoding="utf-8")
        config_maps[name] = str(folder)
    return Mounts(pvcs={claim: str(workspace.claim_dir(claim)) for claim in mounts.pvcs}, config_maps=config_maps)


def localize_trainer_config(config: TrainerConfig, workspace: Workspace, manifests: Manifests,
                            work: WorkVolumePlan) -> TrainerConfig:
    """The cluster's config with local folders. The work volume follows the cluster's rule: a claim
    the spec names (workVolume.claimName, output.pvc) is that claim's folder; the claim kubetune
    would create (or the Pod's own disk) is the job's folder under --workdir."""
    mounts = local_mounts(config.mounts, config.namespace, workspace, manifests)
    job_dir = workspace.job_dir(config.namespace, config.name)
    if work.claim_name is None or work.created:
        if work.claim_name is not None:
            mounts = mounts.model_copy(update={"pvcs": {**mounts.pvcs, work.claim_name: str(job_dir)}})
        work_dir = str(job_dir)
    else:
        work_dir = mounts.path_of_pvc(work.claim_name, work.path)
    # work_location unset: messages and results name local folders, not pvc:CLAIM/PATH.
    return config.model_copy(update={"mounts": mounts, "work_dir": work_dir, "work_location": None,
                                     "allow_private_urls": True, "result_path": str(job_dir / "result.json")})


def run_folder(config: TrainerConfig) -> Path:
    """The run's own folder (what the trainer opens): <workDir>/runs/<uid>-<runHash>."""
    assert config.run is not None, "resolve_trainer_config names every run"
    return Path(config.work_dir) / RUNS_DIR / config.run.folder_name


def earlier_runs(config: TrainerConfig) -> list[Path]:
    """Run folders of the same TuningJob made from another spec: kept, not reused."""
    runs = Path(config.work_dir) / RUNS_DIR
    if config.run is None or not runs.is_dir():
        return []
    return sorted(p for p in runs.iterdir() if p.is_dir() and config.run.is_earlier_spec(p.name))


def localize_validator_config(config: ValidatorConfig, workspace: Workspace, manifests: Manifests) -> ValidatorConfig:
    mounts = local_mounts(config.mounts, config.namespace, workspace, manifests)
    folder = workspace.dataset_dir(config.namespace, config.name)
    # Private addresses are the norm on a laptop (a local file server); the cluster's guard is for shared nodes.
    return config.model_copy(update={"mounts": mounts, "result_path": str(folder / "report.json"),
                                     "allow_private_urls": True})


def missing_input_volumes(mounts: Mounts, writable: set[str]) -> list[tuple[str, str]]:
    """(claim, folder) of volumes the run reads that do not exist: the user forgot --volume."""
    return [(claim, path) for claim, path in sorted(mounts.pvcs.items())
            if claim not in writable and not Path(path).is_dir()]


def check_input_volumes(manifests: Manifests, workspace: Workspace) -> list[str]:
    """Problems with the volumes the runs would read, found before anything runs (the usual one:
    a data claim without --volume)."""
    problems: list[str] = []

    def check(ref: object, where: str, claim: str) -> None:
        folder = workspace.claim_dir(claim)
        if not folder.is_dir():
            problems.append(f"{ref}: {where}: volume claim {claim!r} maps to {folder}, which does not exist: "
                            f"pass --volume {claim}=FOLDER")

    for loaded_ds in manifests.datasets.values():
        pvc = loaded_ds.obj.spec.source.pvc
        if pvc is not None:
            check(loaded_ds.ref, "spec.source.pvc.claimName", pvc.claim_name)
    for loaded in manifests.tuning_jobs:
        spec = loaded.obj.spec
        for group in ("train", "validation"):
            for i, entry in enumerate(getattr(spec.datasets, group)):
                if entry.source is not None and entry.source.pvc is not None:
                    check(loaded.ref, f"spec.datasets.{group}[{i}].source.pvc.claimName", entry.source.pvc.claim_name)
        model_path = parse_pvc_path(spec.base_model.path) if spec.base_model.path else None
        if model_path is not None:
            check(loaded.ref, "spec.baseModel.path", model_path.claim_name)
    return problems


def container_of(job: Mapping[str, Any]) -> dict[str, Any]:
    """The (only) container of a rendered Job."""
    containers: list[dict[str, Any]] = job["spec"]["template"]["spec"]["containers"]
    return containers[0]


def process_env(container: Mapping[str, Any], namespace: str, manifests: Manifests,
                environ: Mapping[str, str]) -> dict[str, str]:
    """The user's environment plus the container's env, secretKeyRefs filled from the files' Secrets."""
    env = dict(environ)
    for var in container.get("env", []):
        name = var["name"]
        if name in _CONTAINER_ONLY_ENV:
            continue
        if "value" in var:
            env[name] = str(var["value"])
            continue
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref is None:
            continue
        value = manifests.secrets.get((namespace, ref["name"]), {}).get(ref.get("key", ""))
        if value is not None:
            env[name] = value
        elif name not in _ENV_FALLBACK:
            # The manifest check refuses this case before anything runs; never leak a stale value.
            env.pop(name, None)
    return env


def process_args(container: Mapping[str, Any], config_path: Path) -> list[str]:
    """The container's command after the program name, with the config mount replaced by a local file."""
    command = [*container.get("command", []), *container.get("args", [])]
    args = command[1:]
    if "--config" in args:
        args[args.index("--config") + 1] = str(config_path)
    return args
