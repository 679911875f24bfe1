"""The run folder's layout, the newest checkpoint, and the marker of a finished model.

The run folder is <workDir>/runs/<uid>-<runHash>/ (runfolder.py); inside it:

    checkpoints/checkpoint-N/              Trainer checkpoints (resume from the newest complete one;
                                           removed once final/ is written)
    checkpoints/checkpoint-N.diverged/     saved after the loss diverged: never resumed from
    runs/                                  TensorBoard events while training
    base_eval.json                         the base model's evaluation (kept across restarts)
    base-samples.json                      the base model's sample answers (kept across restarts)
    base-preference-scores.json            dpo: the base model's scores of the validation pairs
    samples.json                           sample prompts with the base and tuned answers, in full
    scratch-base/                          the scratch base model, when baseModel.scratch
    final/                                 the finished model: adapter or weights, tokenizer,
                                           README.md, runs/, and FINISHED_MARKER
    merged/                                base + adapter merged, when output.merge
    kubetune-run.json                      whose folder this is, and how many attempts it saw
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from kubetune.api.run import FINAL_DIR, FINISHED_MARKER
from kubetune.api.tuningjobstatus import SampleGeneration, TrainingMetrics

__all__ = ["CHECKPOINT_COMPLETE", "FINISHED_MARKER", "FinishedModel", "WorkDir", "checkpoint_step", "mark_complete",
           "promote", "read_finished", "write_finished"]
# Written into a checkpoint after every file of it is on disk: a kill (or a node lost) mid-save
# leaves a checkpoint without it, which a new attempt must not resume from.
CHECKPOINT_COMPLETE = "kubetune-complete"
DIVERGED_SUFFIX = ".diverged"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@dataclass(frozen=True)
class WorkDir:
    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def final(self) -> Path:
        return self.root / FINAL_DIR

    @property
    def merged(self) -> Path:
        return self.root / "merged"

    @property
    def base_eval(self) -> Path:
        return self.root / "base_eval.json"

    def _checkpoints(self) -> list[tuple[int, Path]]:
        if not self.checkpoints.is_dir():
            return []
        return sorted((int(m.group(1)), p) for p in self.checkpoints.iterdir() if (m := _CHECKPOINT.match(p.name)))

    def complete_checkpoints(self) -> dict[int, Path]:
        """Step -> checkpoint folder, for the checkpoints written completely (carrying CHECKPOINT_COMPLETE)."""
        return {step: p for step, p in self._checkpoints() if (p / CHECKPOINT_COMPLETE).is_file()}

    def newest_checkpoint(self) -> Path | None:
        """The checkpoint with the highest step that was written completely (carries CHECKPOINT_COMPLETE)."""
        complete = self.complete_checkpoints()
        return complete[max(complete)] if complete else None

    def set_aside_checkpoints_after(self, step: int) -> list[Path]:
        """Rename checkpoints past `step` to checkpoint-N.diverged: kept for a look, never resumed from."""
        moved = []
        for found_step, path in self._checkpoints():
            if found_step > step:
                target = path.with_name(f"{path.name}{DIVERGED_SUFFIX}")
                shutil.rmtree(target, ignore_errors=True)
                path.rename(target)
                moved.append(target)
        return moved

    def discard_incomplete_checkpoints(self) -> list[str]:
        """Remove checkpoints a kill interrupted mid-save (the Trainer would count them as saved)."""
        torn = [p for _, p in self._checkpoints() if not (p / CHECKPOINT_COMPLETE).is_file()]
        for path in torn:
            shutil.rmtree(path, ignore_errors=True)
        return [p.name for p in torn]


def checkpoint_step(checkpoint: Path) -> int:
    match = _CHECKPOINT.match(checkpoint.name)
    if match is None:
        raise ValueError(f"{checkpoint} is not a checkpoint folder")
    return int(match.group(1))


def mark_complete(checkpoint: Path) -> None:
    """Flush every file of a saved checkpoint to disk, then mark it complete (see CHECKPOINT_COMPLETE)."""
    for path in sorted(checkpoint.rglob("*")):
        if path.is_file():
            _fsync(path)
    (checkpoint / CHECKPOINT_COMPLETE).write_text("", encoding="utf-8")
    _fsync(checkpoint / CHECKPOINT_COMPLETE)
    _fsync(checkpoint)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the files themselves were flushed
    finally:
        os.close(fd)


@dataclass(frozen=True)
class FinishedModel:
    metrics: TrainingMetrics
    base_model_revision: str | None
    merged: bool
    samples: tuple[SampleGeneration, ...] = ()  # truncated, for the TrainerResult


def read_finished(work: WorkDir) -> FinishedModel | None:
    """The finished model in <work_dir>/final, or None when training has not completed."""
    marker = work.final / FINISHED_MARKER
    if not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
        return FinishedModel(metrics=TrainingMetrics.model_validate(data["metrics"]),
                             base_model_revision=data.get("baseModelRevision"), merged=bool(data.get("merged")),
                             samples=tuple(SampleGeneration.model_validate(s) for s in data.get("samples", [])))
    except (ValueError, KeyError):
        return None


def write_finished(staging: Path, finished: FinishedModel) -> None:
    """Written last into the staging folder, which then becomes final/ in one rename."""
    data = {"metrics": finished.metrics.to_wire(), "baseModelRevision": finished.base_model_revision,
            "merged": finished.merged, "samples": [s.to_wire() for s in finished.samples]}
    (staging / FINISHED_MARKER).write_text(json.dumps(data, indent=1), encoding="utf-8")


def promote(staging: Path, target: Path) -> None:
    """Replace `target` with `staging` (a half-written final/ from a crash is discarded)."""
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
