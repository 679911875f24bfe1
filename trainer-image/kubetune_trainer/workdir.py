"""The work folder's layout, the newest checkpoint, and the marker of a finished model.

    <work_dir>/checkpoints/checkpoint-N/   Trainer checkpoints (resume from the newest)
    <work_dir>/runs/                       TensorBoard events while training
    <work_dir>/base_eval.json              the base model's evaluation (kept across restarts)
    <work_dir>/scratch-base/               the scratch base model, when baseModel.scratch
    <work_dir>/final/                      the finished model: adapter or weights, tokenizer,
                                           README.md, runs/, and FINISHED_MARKER
    <work_dir>/merged/                     base + adapter merged, when output.merge
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from kubetune.api.tuningjob import TrainingMetrics

FINISHED_MARKER = "kubetune-finished.json"
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
        return self.root / "final"

    @property
    def merged(self) -> Path:
        return self.root / "merged"

    @property
    def base_eval(self) -> Path:
        return self.root / "base_eval.json"

    def complete_checkpoints(self) -> dict[int, Path]:
        """Step -> checkpoint folder, for the checkpoints written completely (with trainer_state.json)."""
        if not self.checkpoints.is_dir():
            return {}
        return {int(m.group(1)): p for p in self.checkpoints.iterdir()
                if (m := _CHECKPOINT.match(p.name)) and (p / "trainer_state.json").is_file()}

    def newest_checkpoint(self) -> Path | None:
        """The checkpoint with the highest step that was written completely (has trainer_state.json)."""
        found = self.complete_checkpoints()
        return found[max(found)] if found else None


@dataclass(frozen=True)
class FinishedModel:
    metrics: TrainingMetrics
    base_model_revision: str | None
    merged: bool


def read_finished(work: WorkDir) -> FinishedModel | None:
    """The finished model in <work_dir>/final, or None when training has not completed."""
    marker = work.final / FINISHED_MARKER
    if not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
        return FinishedModel(metrics=TrainingMetrics.model_validate(data["metrics"]),
                             base_model_revision=data.get("baseModelRevision"), merged=bool(data.get("merged")))
    except (ValueError, KeyError):
        return None


def write_finished(staging: Path, finished: FinishedModel) -> None:
    """Written last into the staging folder, which then becomes final/ in one rename."""
    data = {"metrics": finished.metrics.to_wire(), "baseModelRevision": finished.base_model_revision,
            "merged": finished.merged}
    (staging / FINISHED_MARKER).write_text(json.dumps(data, indent=1), encoding="utf-8")


def promote(staging: Path, target: Path) -> None:
    """Replace `target` with `staging` (a half-written final/ from a crash is discarded)."""
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
