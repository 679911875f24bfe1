"""The run's own folder on the work volume: `<workDir>/runs/<uid>-<runHash>/`.

Every start of the trainer for the same run (a Job retry, a replaced Pod, suspend and resume, a
second `kubetune run`) opens the same folder, counts itself as the next attempt and resumes what
is there. Another TuningJob, or the same one with a spec that trains a different model, gets
another folder: nothing is shared. The marker file says whose folder it is, so a folder that
somehow holds another run's work is refused rather than resumed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kubetune.api.contract import FailureReason, TrainerConfig
from kubetune.api.run import RUNS_DIR, RunIdentity, local_uid, run_hash
from kubetune_trainer.errors import TrainerFailure
from kubetune_trainer.workdir import WorkDir

RUN_MARKER = "kubetune-run.json"


@dataclass(frozen=True)
class RunFolder:
    work: WorkDir
    identity: RunIdentity
    attempt: int  # 1 for the first start on this folder
    earlier_runs: tuple[str, ...]  # folders of the same TuningJob made from another spec (not reused)
    local_root: Path  # config.workDir
    shown_root: str  # config.workDir as people name it (pvc:CLAIM/PATH), or the local path

    def where(self, path: Path) -> str:
        """`path` (inside the work volume) as people find it: pvc:CLAIM/PATH/..., or the local path."""
        try:
            inner = path.relative_to(self.local_root)
        except ValueError:
            return str(path)
        return str(PurePosixPath(self.shown_root) / inner.as_posix()) if str(inner) != "." else self.shown_root


def identity_of(config: TrainerConfig) -> RunIdentity:
    """The operator (or the local mode) names the run; a bare trainer config gets the same rule."""
    if config.run is not None:
        return config.run
    return RunIdentity(uid=local_uid(config.namespace, config.name), hash=run_hash(config.spec))


def open_run_folder(config: TrainerConfig) -> RunFolder:
    identity = identity_of(config)
    runs = Path(config.work_dir) / RUNS_DIR
    root = runs / identity.folder_name
    root.mkdir(parents=True, exist_ok=True)
    attempts = _read_attempts(root / RUN_MARKER, identity)
    _write_marker(root / RUN_MARKER, identity, config, attempts + 1)
    earlier = tuple(sorted(p.name for p in runs.iterdir() if p.is_dir() and identity.is_earlier_spec(p.name)))
    return RunFolder(work=WorkDir(root), identity=identity, attempt=attempts + 1, earlier_runs=earlier,
                     local_root=Path(config.work_dir), shown_root=config.work_location or config.work_dir)


def _read_attempts(marker: Path, identity: RunIdentity) -> int:
    if not marker.is_file():
        return 0
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0  # a marker torn by a kill mid-write: the folder is still ours by its name
    if (data.get("uid"), data.get("runHash")) != (identity.uid, identity.hash):
        raise TrainerFailure(
            FailureReason.INVALID_CONFIG,
            f"the work folder {marker.parent} belongs to run {data.get('uid')}-{data.get('runHash')}, not to "
            f"{identity.folder_name}: it was copied or renamed; move it away or give the run another work volume",
        )
    attempts = data.get("attempts")
    return attempts if isinstance(attempts, int) and attempts >= 0 else 0


def _write_marker(marker: Path, identity: RunIdentity, config: TrainerConfig, attempts: int) -> None:
    data = {"uid": identity.uid, "runHash": identity.hash, "namespace": config.namespace, "name": config.name,
            "attempts": attempts}
    staging = marker.with_name(marker.name + ".tmp")
    staging.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(staging, marker)
