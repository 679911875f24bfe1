"""What every training attempt shares, supervised or DPO: where it resumes from, the callbacks that
report progress, mark checkpoints complete and watch for divergence, and how an attempt ends when
it was stopped or diverged. One place, so a DPO run is as durable as a supervised one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune.api.contract import FailureReason
from kubetune_trainer.errors import TrainerFailure
from kubetune_trainer.events import Reporter
from kubetune_trainer.stop import StopRequest
from kubetune_trainer.training.callbacks import CheckpointMarker, DivergenceCallback, ProgressCallback
from kubetune_trainer.training.divergence import DivergenceDetector
from kubetune_trainer.workdir import WorkDir, checkpoint_step


@dataclass(frozen=True)
class ResumePoint:
    """The newest complete checkpoint of the run folder, or none: a start from step 0."""

    checkpoint: Path | None

    @property
    def step(self) -> int | None:
        return checkpoint_step(self.checkpoint) if self.checkpoint is not None else None

    @property
    def argument(self) -> str | None:
        """What Trainer.train(resume_from_checkpoint=...) takes."""
        return str(self.checkpoint) if self.checkpoint is not None else None

    def stage_message(self) -> str:
        if self.checkpoint is None:
            return "training from step 0"
        return f"resuming from {self.checkpoint.name} (checkpoint step {self.step})"


def tidy_torn_checkpoints(work: WorkDir, reporter: Reporter) -> None:
    """Remove checkpoints a kill tore mid-save (the Trainer would count them as saved)."""
    torn = work.discard_incomplete_checkpoints()
    if torn:
        reporter.log(f"removed {', '.join(torn)}: the previous attempt was stopped while saving it")


def find_resume_point(work: WorkDir, reporter: Reporter) -> ResumePoint:
    """One process: tidy torn checkpoints, then the newest complete one."""
    tidy_torn_checkpoints(work, reporter)
    return ResumePoint(work.newest_checkpoint())


def attempt_callbacks(reporter: Reporter, stop: StopRequest, point: ResumePoint, *, attempt: int,
                      divergence: DivergenceCallback, log_dir: Path | None) -> list[Any]:
    """Progress lines (with the resume point and attempt on each), the divergence watch, the
    checkpoint completion mark, and TensorBoard event files in `log_dir` (None: this process
    writes none, as every rank but 0 of a distributed run)."""
    callbacks: list[Any] = [ProgressCallback(reporter, stop, resumed_from_step=point.step, attempt=attempt),
                            divergence, CheckpointMarker()]
    if log_dir is not None:
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        log_dir.mkdir(parents=True, exist_ok=True)
        callbacks.append(TensorBoardCallback(SummaryWriter(log_dir=str(log_dir))))
    return callbacks


def stopped_failure(stop: StopRequest, step: int, work: WorkDir) -> TrainerFailure:
    return TrainerFailure(
        FailureReason.INTERRUPTED,
        f"stopped by {stop.requested} at step {step}; a checkpoint is saved in {work.checkpoints}: a new "
        "attempt resumes from it",
    )


def set_aside_bad_checkpoints(work: WorkDir, detector: DivergenceDetector) -> list[Path]:
    """Checkpoints written after the last good logged loss become checkpoint-N.diverged, so a retry
    resumes from a good one."""
    return work.set_aside_checkpoints_after(detector.last_good_step or 0)


def diverged_failure(work: WorkDir, detector: DivergenceDetector, set_aside: list[Path]) -> TrainerFailure:
    diverged = detector.diverged
    assert diverged is not None
    kept = work.newest_checkpoint()
    where = f"the last good checkpoint is {kept.name} in {work.checkpoints}" if kept else "no checkpoint was saved"
    aside = f" ({', '.join(p.name for p in set_aside)} set aside)" if set_aside else ""
    return TrainerFailure(
        FailureReason.DIVERGED,
        f"training diverged at step {diverged.step}: {diverged.why}; {where}{aside}. Lower learningRate (or raise "
        "warmupRatio), or tune spec.guardrails.divergence if this was a false alarm",
        retryable=False,
    )
