"""Deliver a finished model to output.pvc: <path>/final (and <path>/merged), each replaced in one rename.

The run trains in its own folder (<workDir>/runs/<uid>-<runHash>/); the output folder gets a
copy of the result. By default the runs live on the output claim itself, so the "copy" is hard
links: instant and free of space. Across filesystems (workVolume names another claim) files are
copied. A delivered folder names the run that made it: a retry after a failed push finds its own
model already there and does nothing, and a later run that delivers to the same path replaces
it as a push to the same Hub repo would.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from kubetune.api.contract import TrainerConfig
from kubetune_trainer.events import Reporter
from kubetune_trainer.runfolder import RunFolder
from kubetune_trainer.workdir import FinishedModel

DELIVERED_MARKER = "kubetune-delivered.json"


def output_location(config: TrainerConfig, folder: str = "final") -> str | None:
    """Where output.pvc's `folder` is, as people name it (pvc:CLAIM/PATH/final); the local path
    outside a Pod (a config the operator rendered carries workLocation, a local one does not)."""
    pvc = config.spec.output.pvc
    if pvc is None:
        return None
    if config.work_location is None:
        return str(Path(config.mounts.path_of_pvc(pvc.claim_name, pvc.path)) / folder)
    return f"pvc:{pvc.claim_name}/{pvc.path.strip('/')}/{folder}"


def deliver_to_volume(config: TrainerConfig, run: RunFolder, finished: FinishedModel, reporter: Reporter) -> None:
    pvc = config.spec.output.pvc
    if pvc is None:
        return
    target_root = Path(config.mounts.path_of_pvc(pvc.claim_name, pvc.path))
    target_root.mkdir(parents=True, exist_ok=True)
    parts = [("final", run.work.final)]
    if finished.merged and run.work.merged.is_dir():
        parts.append(("merged", run.work.merged))
    for name, source in parts:
        _deliver(source, target_root / name, run.identity.folder_name, reporter)
    reporter.log(f"model delivered to {output_location(config)}")


def _deliver(source: Path, target: Path, run_name: str, reporter: Reporter) -> None:
    previous = _delivered_by(target)
    if previous == run_name:
        return  # an earlier attempt of this run delivered it (then, say, the push failed)
    if previous is not None:
        reporter.log(f"replacing {target.name}/ of run {previous} in {target.parent} with this run's")
    elif target.exists():
        reporter.log(f"replacing {target} (not written by kubetune) with this run's {target.name}/")
    staging = target.with_name(f".{target.name}.{run_name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    _link_or_copy_tree(source, staging)
    (staging / DELIVERED_MARKER).write_text(json.dumps({"run": run_name}), encoding="utf-8")
    old = target.with_name(f".{target.name}.{run_name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _delivered_by(target: Path) -> str | None:
    try:
        run = json.loads((target / DELIVERED_MARKER).read_text(encoding="utf-8")).get("run")
    except (OSError, ValueError, AttributeError):
        return None
    return run if isinstance(run, str) else None


def _link_or_copy_tree(source: Path, target: Path) -> None:
    """Hard links where the filesystem allows (same device), copies where it does not."""
    link = True
    for folder, _, files in os.walk(source):
        here = target / Path(folder).relative_to(source)
        here.mkdir(parents=True, exist_ok=True)
        for name in files:
            if link:
                try:
                    os.link(Path(folder) / name, here / name)
                    continue
                except OSError:
                    link = False  # another device, or a filesystem without hard links: copy the rest
            shutil.copy2(Path(folder) / name, here / name)
