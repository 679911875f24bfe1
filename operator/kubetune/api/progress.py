"""The trainer's progress protocol: one JSON object per line behind a fixed prefix.

The trainer writes these lines to stdout; the operator reads them from the Pod log tail and
the local mode from the process's output. Both parse them here, so they read them alike.

    ##kubetune {"event": "progress", "step": 50, "totalSteps": 900, "loss": 1.23, ...}
    ##kubetune {"event": "stage", "stage": "publishing", "message": "pushing to my-org/model"}
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from pydantic import Field, TypeAdapter, ValidationError

from kubetune.api.common import KubeModel

PREFIX = "##kubetune "


class Stage(StrEnum):
    """What the trainer is doing; the operator turns `publishing` into the Publishing phase."""

    LOADING = "loading"
    TRAINING = "training"
    EVALUATING = "evaluating"
    SAVING = "saving"
    PUBLISHING = "publishing"
    DONE = "done"


class ProgressEvent(KubeModel):
    """Emitted at every logging step (and after each evaluation)."""

    event: Literal["progress"] = "progress"
    step: int = Field(ge=0)
    total_steps: int = Field(ge=0)
    epoch: float | None = Field(default=None, ge=0)
    loss: float | None = None
    eval_loss: float | None = None
    learning_rate: float | None = Field(default=None, ge=0)
    tokens_per_second: float | None = Field(default=None, ge=0)
    eta_seconds: int | None = Field(default=None, ge=0)
    tokens: int | None = Field(default=None, ge=0)  # trained so far (non-padding), for status.usage
    per_device_batch_size: int | None = Field(default=None, ge=1)  # in use: lowered by an OOM retry
    gradient_accumulation_steps: int | None = Field(default=None, ge=1)
    # Set on every line of an attempt that resumed from a checkpoint (not only the first, which
    # may have left the log window the operator reads); `attempt` counts starts on the work folder.
    resumed_from_step: int | None = Field(default=None, ge=0)
    attempt: int | None = Field(default=None, ge=1)

    @property
    def percent(self) -> int | None:
        if not self.total_steps:
            return None
        return min(100, int(100 * self.step / self.total_steps))


class StageEvent(KubeModel):
    """Emitted when the trainer moves to another stage."""

    event: Literal["stage"] = "stage"
    stage: Stage
    message: str = ""


TrainerEvent = ProgressEvent | StageEvent
_EVENT = TypeAdapter[TrainerEvent](TrainerEvent)


def format_event(event: TrainerEvent) -> str:
    """The line the trainer prints (no trailing newline)."""
    return PREFIX + json.dumps(event.to_wire(), separators=(",", ":"), sort_keys=True)


def parse_line(line: str) -> TrainerEvent | None:
    """The event on this line, or None for an ordinary log line or a garbled event."""
    start = line.find(PREFIX)
    if start < 0:
        return None
    try:
        return _EVENT.validate_json(line[start + len(PREFIX):].strip())
    except ValidationError:
        return None


@dataclass(frozen=True)
class LogSummary:
    """What a stretch of trainer log says: the latest progress and stage, and the human lines."""

    progress: ProgressEvent | None
    stage: StageEvent | None
    plain_lines: list[str]


def summarize(lines: Iterable[str]) -> LogSummary:
    """Fold a log into its latest progress, latest stage and the lines that are not events.

    An evaluation line carries evalLoss but may lack a training loss; the latest known value
    of each field is kept so a later line without it does not erase it.
    """
    progress: ProgressEvent | None = None
    stage: StageEvent | None = None
    plain: list[str] = []
    for raw in lines:
        line = raw.rstrip("\n")
        event = parse_line(line)
        if event is None:
            if line.strip():
                plain.append(line)
        elif isinstance(event, StageEvent):
            stage = event
        elif progress is None:
            progress = event
        else:
            merged = progress.model_dump()
            merged.update({k: v for k, v in event.model_dump().items() if v is not None})
            progress = ProgressEvent.model_validate(merged)
    return LogSummary(progress=progress, stage=stage, plain_lines=plain)
