"""Trainer callbacks: progress lines at every logging step, and a clean stop when a StopRequest is set."""

from __future__ import annotations

import time
from typing import Any

from transformers import TrainerCallback

from kubetune.api.progress import ProgressEvent
from kubetune_trainer.distributed import any_rank
from kubetune_trainer.events import Reporter
from kubetune_trainer.stop import StopRequest


class ProgressCallback(TrainerCallback):
    def __init__(self, reporter: Reporter, stop: StopRequest) -> None:
        self.reporter = reporter
        self.stop = stop
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
        ))


def _finite(value: float | None) -> float | None:
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return round(float(value), 6)
