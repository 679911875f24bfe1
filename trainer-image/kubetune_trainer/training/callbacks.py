"""Trainer callbacks: progress lines at every logging step, a clean stop when a StopRequest is set,
checkpoints marked complete once they are on disk, and a stop (without a checkpoint of the bad
state) when the loss diverges."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from kubetune.api.progress import ProgressEvent
from kubetune_trainer.distributed import any_rank, barrier, broadcast
from kubetune_trainer.events import Reporter
from kubetune_trainer.stop import StopRequest
from kubetune_trainer.training.divergence import DivergenceDetector
from kubetune_trainer.workdir import mark_complete


class CheckpointMarker(TrainerCallback):
    """Called after the Trainer wrote a checkpoint (trainer_state.json last): flush and mark it.

    In a distributed run every rank writes a part (its RNG state, its shard): all of them are on
    disk before the rank that wrote trainer_state.json (rank 0, or each node's first with a
    volume per node) marks the checkpoint complete.
    """

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        barrier()
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if args.should_save and checkpoint.is_dir():
            mark_complete(checkpoint)


class ProgressCallback(TrainerCallback):
    """One progress line per logging step, and one when training starts: where it starts, with which
    batch (an out-of-memory retry lowers it). An attempt that resumed says so on every line, so the
    operator sees it whichever part of the log it reads."""

    def __init__(self, reporter: Reporter, stop: StopRequest, *, resumed_from_step: int | None = None,
                 attempt: int | None = None) -> None:
        self.reporter = reporter
        self.stop = stop
        self.resumed_from_step = resumed_from_step
        self.attempt = attempt
        self._start_time = 0.0
        self._start_step = 0
        self._last_time = 0.0
        self._last_tokens = 0
        self._armed = False  # the base model's evaluation (before training) is not progress

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._armed = True
        self._start_time = self._last_time = time.monotonic()
        self._start_step = state.global_step
        self._last_tokens = state.num_input_tokens_seen
        self.stop.training = True
        self.reporter.progress(ProgressEvent(
            step=state.global_step, total_steps=state.max_steps or 0,
            epoch=round(state.epoch, 4) if state.epoch is not None else None,
            tokens=state.num_input_tokens_seen, per_device_batch_size=args.per_device_train_batch_size,
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            resumed_from_step=self.resumed_from_step, attempt=self.attempt,
        ))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.stop.training = False

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Any rank's request stops every rank after this same step, so the checkpoint they save
        # together is consistent (one process: this one's request).
        if any_rank(self.stop.requested is not None):
            self.stop.requested = self.stop.requested or "a stop on another rank"
            control.should_save = True
            control.should_training_stop = True

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
               **kwargs: Any) -> None:
        logs = logs or {}
        if not self._armed or ("loss" not in logs and "eval_loss" not in logs):
            return  # the end-of-training summary; the result carries those figures
        now = time.monotonic()
        tokens = state.num_input_tokens_seen
        tokens_per_second = None
        if "loss" in logs and now > self._last_time:
            tokens_per_second = max(0.0, (tokens - self._last_tokens) / (now - self._last_time))
            self._last_time, self._last_tokens = now, tokens
        done = state.global_step - self._start_step
        eta = None
        if done > 0 and state.max_steps:
            eta = max(0, round((now - self._start_time) / done * (state.max_steps - state.global_step)))
        self.reporter.progress(ProgressEvent(
            step=state.global_step,
            total_steps=state.max_steps or 0,
            epoch=round(state.epoch, 4) if state.epoch is not None else None,
            loss=_finite(logs.get("loss")),
            eval_loss=_finite(logs.get("eval_loss")),
            learning_rate=logs.get("learning_rate"),
            tokens_per_second=round(tokens_per_second, 1) if tokens_per_second is not None else None,
            eta_seconds=eta,
            tokens=tokens,
            per_device_batch_size=args.per_device_train_batch_size,
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            resumed_from_step=self.resumed_from_step,
            attempt=self.attempt,
        ))


class DivergenceCallback(TrainerCallback):
    """Stops training once the detector says the loss diverged, and keeps checkpoints from being
    saved while the loss looks suspicious, so the newest checkpoint is a good one."""

    def __init__(self, detector: DivergenceDetector, reporter: Reporter) -> None:
        self.detector = detector
        self.reporter = reporter

    def _no_save_while_suspect(self, control: Any) -> None:
        if self.detector.suspect:
            control.should_save = False

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._no_save_while_suspect(control)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._no_save_while_suspect(control)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
               **kwargs: Any) -> None:
        loss = (logs or {}).get("loss")
        if loss is None or self.detector.diverged is not None:
            return
        # Every rank logs the same steps; rank 0's loss decides, so every rank's detector says the
        # same (suspect, diverged) and all save, or stop, at the same step.
        loss = broadcast(float(loss))
        if self.detector.observe(state.global_step, loss) is not None:
            control.should_training_stop = True
            control.should_evaluate = False
        elif self.detector.suspect:
            self.reporter.log(f"warning: the loss at step {state.global_step} ({loss:.4g}) is far above the "
                              "recent median: no checkpoint is saved until it comes back")
        self._no_save_while_suspect(control)


def _finite(value: float | None) -> float | None:
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return round(float(value), 6)
