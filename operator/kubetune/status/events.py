"""Events for `kubectl describe`: one per transition between two statuses, never one per refresh."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from kubetune.api import ConditionStatus, DatasetPhase, DatasetStatus, TuningJobPhase, TuningJobStatus
from kubetune.status.conditions import (
    BLOCKING_WAIT_REASONS,
    DatasetCondition,
    Reason,
    TuningJobCondition,
    get_condition,
    is_true,
)
from kubetune.status.diagnosis import clip

MILESTONE_PERCENT: Final = 10
_WARN_WAITING: Final = frozenset({Reason.DATASET_NOT_FOUND, Reason.DATASET_INVALID})
_NOTABLE_RUNNING_REASONS: Final = BLOCKING_WAIT_REASONS | {Reason.QUEUED, Reason.RETRYING}


@dataclass(frozen=True)
class EventRecord:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


def _normal(reason: str, message: str) -> EventRecord:
    return EventRecord("Normal", reason, clip(message))


def _warning(reason: str, message: str) -> EventRecord:
    return EventRecord("Warning", reason, clip(message))


def _condition_reason(status: TuningJobStatus | DatasetStatus, type_: str) -> tuple[str, str] | None:
    found = get_condition(status.conditions, type_)
    return (found.reason, found.message) if found is not None else None


def _milestone(before: TuningJobStatus, current: TuningJobStatus) -> EventRecord | None:
    """A Progress event when the run crosses a multiple of 10% (the highest one crossed)."""
    if current.phase is not TuningJobPhase.RUNNING or current.progress is None or current.progress.percent is None:
        return None
    now_percent = current.progress.percent
    was = before.progress.percent if before.progress is not None and before.progress.percent is not None else 0
    reached = now_percent // MILESTONE_PERCENT * MILESTONE_PERCENT
    if reached <= was // MILESTONE_PERCENT * MILESTONE_PERCENT or reached in (0, 100):
        return None
    p = current.progress
    parts = [f"{reached}% (step {p.step}/{p.total_steps})"]
    if p.loss is not None:
        parts.append(f"loss {p.loss:.4g}")
    if p.eta_seconds is not None:
        parts.append(f"ETA {p.eta_seconds // 60}m")
    return _normal("Progress", ", ".join(parts))


def _guardrail_events(before: TuningJobStatus, current: TuningJobStatus) -> list[EventRecord]:
    """The preflight's verdict (a failure needs none: the run's Failed event has its reason) and a batch
    lowered after CUDA ran out of memory."""
    events: list[EventRecord] = []
    was = get_condition(before.conditions, TuningJobCondition.PREFLIGHT_PASSED)
    now = get_condition(current.conditions, TuningJobCondition.PREFLIGHT_PASSED)
    if now is not None and now.status is ConditionStatus.TRUE and (was is None or was.status is not now.status):
        if now.reason == Reason.WONT_FIT:
            events.append(_warning(Reason.WONT_FIT, now.message))
        else:
            events.append(_normal(TuningJobCondition.PREFLIGHT_PASSED, now.message))
    old, new = before.progress, current.progress
    if old is not None and new is not None and old.per_device_batch_size and new.per_device_batch_size \
            and new.per_device_batch_size < old.per_device_batch_size:
        events.append(_warning(Reason.BATCH_REDUCED, (
            f"CUDA ran out of memory: perDeviceBatchSize {old.per_device_batch_size} -> "
            f"{new.per_device_batch_size}, gradientAccumulationSteps {old.gradient_accumulation_steps} -> "
            f"{new.gradient_accumulation_steps} (the same effective batch), resumed from the last checkpoint")))
    return events


def _resumed(before: TuningJobStatus, current: TuningJobStatus) -> EventRecord | None:
    """One Event per attempt that resumed from a checkpoint (a retry, a replaced Pod, a resume)."""
    now, was = current.progress, before.progress
    if now is None or now.resumed_from_step is None:
        return None
    if was is not None and (was.attempt, was.resumed_from_step) == (now.attempt, now.resumed_from_step):
        return None
    attempt = f" (attempt {now.attempt})" if now.attempt is not None else ""
    return _normal("ResumedFromCheckpoint", f"Resumed from checkpoint step {now.resumed_from_step}{attempt}")


def status_events(previous: TuningJobStatus | None, current: TuningJobStatus) -> list[EventRecord]:
    """The Events that the step from `previous` to `current` deserves (none when nothing moved)."""
    before = previous or TuningJobStatus()
    C = TuningJobCondition
    events: list[EventRecord] = []
    b, c = before.phase, current.phase

    events.extend(_guardrail_events(before, current))
    if not is_true(before.conditions, C.JOB_CREATED) and is_true(current.conditions, C.JOB_CREATED):
        events.append(_normal("JobCreated", f"created Job {current.job_name}"))
    if c is TuningJobPhase.WAITING_FOR_DATA:
        was = _condition_reason(before, C.DATASETS_READY)
        now = _condition_reason(current, C.DATASETS_READY)
        if b is not TuningJobPhase.WAITING_FOR_DATA or was != now:
            reason = now[0] if now is not None else ""
            make = _warning if reason in _WARN_WAITING else _normal
            events.append(make("WaitingForData", current.message or "waiting for datasets"))
    running_was = _condition_reason(before, C.RUNNING)
    running_now = _condition_reason(current, C.RUNNING)
    if running_now is not None and running_now[0] in _NOTABLE_RUNNING_REASONS and running_now != running_was:
        make = _normal if running_now[0] == Reason.QUEUED else _warning
        events.append(make(running_now[0], running_now[1]))
    if b is TuningJobPhase.SUSPENDED and c is not TuningJobPhase.SUSPENDED and c not in (
            TuningJobPhase.SUCCEEDED, TuningJobPhase.FAILED):
        events.append(_normal("Resumed", "the run was resumed"))
    finished_before = b in (TuningJobPhase.SUCCEEDED, TuningJobPhase.FAILED)
    if before.start_time is None and current.start_time is not None and not finished_before:
        events.append(_normal("Started", "the trainer started"))
    resumed = _resumed(before, current)
    if resumed is not None:
        events.append(resumed)
    milestone = _milestone(before, current)
    if milestone is not None:
        events.append(milestone)
    if c is TuningJobPhase.PUBLISHING and b is not TuningJobPhase.PUBLISHING:
        events.append(_normal("Publishing", current.message or "publishing the model"))
    if not is_true(before.conditions, C.MODEL_PUBLISHED) and is_true(current.conditions, C.MODEL_PUBLISHED):
        published = get_condition(current.conditions, C.MODEL_PUBLISHED)
        events.append(_normal("Published", published.message if published is not None else ""))
    if c is TuningJobPhase.SUSPENDED and b is not TuningJobPhase.SUSPENDED:
        events.append(_normal("Suspended", current.message or "the run is suspended"))
    if c is TuningJobPhase.SUCCEEDED and b is not TuningJobPhase.SUCCEEDED:
        events.append(_normal("Succeeded", current.message or "the run succeeded"))
    if c is TuningJobPhase.FAILED and b is not TuningJobPhase.FAILED:
        error = current.error
        events.append(_warning("Failed", f"{error.reason}: {error.message}" if error is not None else "failed"))
    if not is_true(before.conditions, C.SPEC_CHANGE_REJECTED) and is_true(current.conditions,
                                                                           C.SPEC_CHANGE_REJECTED):
        rejected = get_condition(current.conditions, C.SPEC_CHANGE_REJECTED)
        events.append(_warning("SpecChangeRejected", rejected.message if rejected is not None else ""))
    return events


def _dataset_summary(status: DatasetStatus) -> str:
    parts = [f"{status.valid_rows if status.valid_rows is not None else '?'} of "
             f"{status.rows if status.rows is not None else '?'} rows valid"]
    if status.detected_format is not None:
        parts.append(f"format {status.detected_format.value}")
    if status.revision:
        parts.append(f"revision {status.revision}")
    return ", ".join(parts)


def dataset_events(previous: DatasetStatus | None, current: DatasetStatus) -> list[EventRecord]:
    before = previous or DatasetStatus()
    events: list[EventRecord] = []
    b, c = before.phase, current.phase
    new_generation = before.observed_generation != current.observed_generation
    if c is DatasetPhase.VALIDATING and (b is not DatasetPhase.VALIDATING or new_generation):
        events.append(_normal("Validating", f"validating {current.source or 'the data'} with Job {current.job_name}"))
    ready_was = _condition_reason(before, DatasetCondition.READY)
    ready_now = _condition_reason(current, DatasetCondition.READY)
    if ready_now is not None and ready_now[0] in BLOCKING_WAIT_REASONS and ready_now != ready_was:
        events.append(_warning(ready_now[0], ready_now[1]))
    if c is not b or (new_generation and c is not DatasetPhase.VALIDATING):
        if c is DatasetPhase.READY:
            events.append(_normal("Validated", _dataset_summary(current)))
        elif c is DatasetPhase.INVALID:
            events.append(_warning("Invalid", current.message or _dataset_summary(current)))
        elif c is DatasetPhase.FAILED:
            events.append(_warning("ValidationFailed", f"{current.reason}: {current.message}"))
    return events
