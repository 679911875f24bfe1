"""Derive a TuningJob's status (phase, conditions, progress, result) from what was observed.

Pure: the operator fills a RunObservation (runobservation.py) from the API server, the local
mode from the process it runs, and both call `derive_status`. The phase and message come from
the run's verdict (verdict.py); the conditions, progress and times are derived around it here.
Deriving twice from the same observation gives an equal status, so a handler patches only on
change; a finished run stays finished.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from kubetune.api import (
    ConditionStatus,
    JobError,
    TrainerResult,
    TrainingProgress,
    TuningJobPhase,
    TuningJobStatus,
)
from kubetune.api.common import Condition
from kubetune.api.distributed import effective_batch_size
from kubetune.api.redact import redact
from kubetune.status.conditions import Reason, TuningJobCondition, get_condition, is_true, make_condition, ordered
from kubetune.status.guardrails import preflight_condition, run_pinned, run_usage
from kubetune.status.observe import PodObservation, PodTimes
from kubetune.status.runobservation import RunObservation
from kubetune.status.verdict import RunVerdict, run_verdict, trainer_result

TERMINAL_PHASES: Final = frozenset({TuningJobPhase.SUCCEEDED, TuningJobPhase.FAILED})
LOG_LINE_LIMIT: Final = 500
LOG_TAIL_MAX: Final = 200  # TuningJobStatus.logTail holds at most this many lines


def _progress(previous: TuningJobStatus, obs: RunObservation, phase: TuningJobPhase,
              now: datetime) -> TrainingProgress | None:
    before = previous.progress
    event = obs.log.progress if obs.log is not None else None
    if event is None:
        candidate = before.model_copy(update={"updated_at": None}) if before is not None else None
    else:
        candidate = TrainingProgress(
            step=event.step, total_steps=event.total_steps, epoch=event.epoch, percent=event.percent,
            eta_seconds=event.eta_seconds, loss=event.loss, eval_loss=event.eval_loss,
            learning_rate=event.learning_rate, tokens_per_second=event.tokens_per_second,
            per_device_batch_size=event.per_device_batch_size,
            gradient_accumulation_steps=event.gradient_accumulation_steps,
            resumed_from_step=event.resumed_from_step, attempt=event.attempt,
        )
    if candidate is None:
        return None
    if phase is TuningJobPhase.SUCCEEDED:
        candidate = candidate.model_copy(update={"percent": 100, "eta_seconds": 0})
    if before is not None and before.model_copy(update={"updated_at": None}) == candidate:
        return before
    return candidate.model_copy(update={"updated_at": now})


def _log_tail(previous: TuningJobStatus, obs: RunObservation, lines: int) -> list[str]:
    if obs.log is None:
        return list(previous.log_tail)
    keep = max(0, min(lines, LOG_TAIL_MAX))
    tail = obs.log.plain_lines[-keep:] if keep else []
    return [redact(line)[:LOG_LINE_LIMIT] for line in tail]


def _start_time(previous: TuningJobStatus, pod: PodObservation | None) -> datetime | None:
    if previous.start_time is not None or pod is None:
        return previous.start_time
    if pod.running_since is not None:
        return pod.running_since
    return pod.terminated.started_at if pod.terminated is not None else None


def _completion_time(previous: TuningJobStatus, obs: RunObservation, now: datetime) -> datetime:
    if previous.completion_time is not None:
        return previous.completion_time
    job, pod = obs.job, obs.pod
    candidates = [job.completion_time, job.failed_at] if job is not None else []
    if pod is not None and pod.terminated is not None:
        candidates.append(pod.terminated.finished_at)
    return next((c for c in candidates if c is not None), now)


def _conditions(previous: TuningJobStatus, obs: RunObservation, verdict: RunVerdict, result: TrainerResult | None,
                now: datetime) -> list[Condition]:
    def cond(type_: str, status: bool | ConditionStatus, reason: str, message: str) -> Condition:
        return make_condition(previous.conditions, type_, status, reason, message, now=now,
                              generation=obs.generation)

    C = TuningJobCondition
    phase, job = verdict.phase, obs.job
    out: list[Condition] = []

    before = get_condition(previous.conditions, C.DATASETS_READY)
    if job is not None or is_true(previous.conditions, C.JOB_CREATED):
        # Once the Job exists it runs on the data resolved then: later Dataset edits don't matter.
        if before is not None and before.status is ConditionStatus.TRUE:
            out.append(cond(C.DATASETS_READY, True, before.reason, before.message))
        else:
            out.append(cond(C.DATASETS_READY, True, Reason.RESOLVED, "the Job uses the datasets resolved at creation"))
    elif obs.spec_error:
        out.append(cond(C.DATASETS_READY, ConditionStatus.UNKNOWN, Reason.INVALID_SPEC, "the spec is invalid"))
    elif obs.datasets.ready:
        out.append(cond(C.DATASETS_READY, True, Reason.DATASETS_READY, "every dataset is ready"))
    else:
        waiting = obs.datasets.diagnosis()
        out.append(cond(C.DATASETS_READY, False, waiting.reason, waiting.message))

    preflight = preflight_condition(obs.preflight)
    kept = get_condition(previous.conditions, C.PREFLIGHT_PASSED)
    if preflight is not None:
        out.append(cond(C.PREFLIGHT_PASSED, *preflight))
    elif kept is not None:  # the run went on (or the preflight Job is gone): the verdict stands
        out.append(cond(C.PREFLIGHT_PASSED, kept.status, kept.reason, kept.message))

    if job is not None:
        out.append(cond(C.JOB_CREATED, True, Reason.CREATED, f"Job {job.name}"))
    elif verdict.failure is not None and verdict.failure.reason == Reason.JOB_DELETED:
        out.append(cond(C.JOB_CREATED, False, Reason.JOB_DELETED, verdict.failure.message))
    else:
        why = Reason.INVALID_SPEC if obs.spec_error else (
            Reason.WAITING_FOR_DATA if phase is TuningJobPhase.WAITING_FOR_DATA else Reason.NOT_CREATED)
        out.append(cond(C.JOB_CREATED, False, why, verdict.message))

    running, running_reason = verdict.running
    out.append(cond(C.RUNNING, running, running_reason, verdict.message))
    succeeded = phase is TuningJobPhase.SUCCEEDED
    out.append(cond(C.SUCCEEDED, succeeded, Reason.SUCCEEDED if succeeded else (
        Reason.FAILED if verdict.failure else Reason.NOT_FINISHED), verdict.message if succeeded else ""))
    if verdict.failure is not None:
        out.append(cond(C.FAILED, True, verdict.failure.reason, verdict.failure.message))
    else:
        out.append(cond(C.FAILED, False, Reason.NOT_FAILED, ""))

    model = result.model if result is not None and result.status == "Succeeded" else None
    model = model or (previous.result if is_true(previous.conditions, C.MODEL_PUBLISHED) else None)
    if model is not None and model.repo and model.revision:
        out.append(cond(C.MODEL_PUBLISHED, True, Reason.PUSHED, f"{model.repo}@{model.revision}"))
    elif model is not None and model.path:
        out.append(cond(C.MODEL_PUBLISHED, True, Reason.SAVED, model.path))
    elif phase is TuningJobPhase.PUBLISHING:
        out.append(cond(C.MODEL_PUBLISHED, False, Reason.PUBLISHING, verdict.message))
    else:
        out.append(cond(C.MODEL_PUBLISHED, False, Reason.NOT_PUBLISHED, ""))

    if obs.spec_changed_after_start:
        out.append(cond(C.SPEC_CHANGE_REJECTED, True, Reason.SPEC_FROZEN,
                        "the spec changed after the Job started; the running Job keeps the spec it started "
                        "with. A new run is a new TuningJob: create one with the new spec"))
    elif get_condition(previous.conditions, C.SPEC_CHANGE_REJECTED) is not None:
        out.append(cond(C.SPEC_CHANGE_REJECTED, False, Reason.SPEC_UNCHANGED, "the spec matches the Job"))
    return ordered(out, C.ORDER)


def _fresh(previous: TuningJobStatus, obs: RunObservation, now: datetime, log_tail_lines: int) -> TuningJobStatus:
    result = trainer_result(obs)
    verdict = run_verdict(previous, obs, result)
    terminal = verdict.phase in TERMINAL_PHASES
    progress = _progress(previous, obs, verdict.phase, now)
    usage = run_usage(previous.usage, obs.pod_times or PodTimes(), obs.pod, obs.log, progress, result)
    pinned = run_pinned(previous.pinned, preflight=obs.preflight, job_started=obs.job is not None,
                        datasets=list(obs.pinned_datasets), pod=obs.pod, result=result)
    return TuningJobStatus(
        phase=verdict.phase,
        conditions=_conditions(previous, obs, verdict, result, now),
        observed_generation=obs.generation,
        job_name=obs.job.name if obs.job is not None else previous.job_name,
        world_size=obs.world_size or previous.world_size,
        effective_batch_size=_effective_batch(previous, obs, progress),
        work_dir=obs.job.work_dir if obs.job is not None and obs.job.work_dir else previous.work_dir,
        start_time=_start_time(previous, obs.pod),
        completion_time=_completion_time(previous, obs, now) if terminal else None,
        progress=progress,
        metrics=(result.metrics if result is not None and result.metrics is not None else previous.metrics),
        samples=(result.samples if result is not None and result.samples else previous.samples),
        result=(result.model if result is not None and result.status == "Succeeded" and result.model is not None
                else previous.result),
        log_tail=_log_tail(previous, obs, log_tail_lines),
        error=(JobError(reason=verdict.failure.reason, message=verdict.failure.message)
               if verdict.failure is not None else None),
        message=verdict.message,
        usage=usage,
        pinned=pinned,
    )


def _effective_batch(previous: TuningJobStatus, obs: RunObservation, progress: TrainingProgress | None) -> int | None:
    """Rows per optimizer step with the batch in use: after an out-of-memory retry the trainer
    reports its halved per-device batch and doubled accumulation (the same product by design, unless
    an odd batch was halved), so status says what really trains, not only what the spec asked."""
    world = obs.world_size or previous.world_size
    if world is not None and progress is not None and progress.per_device_batch_size is not None \
            and progress.gradient_accumulation_steps is not None:
        return effective_batch_size(progress.per_device_batch_size, world, progress.gradient_accumulation_steps)
    return obs.effective_batch_size or previous.effective_batch_size


def _may_leave_terminal(previous: TuningJobStatus, obs: RunObservation) -> bool:
    """A run refused before any Job existed may be mended: a corrected spec, or corrected data,
    is still this run."""
    if previous.error is None or previous.job_name is not None:
        return False  # a run that had a Job is over for good
    if previous.error.reason == Reason.INVALID_SPEC:
        return obs.generation is not None and obs.generation != previous.observed_generation
    return previous.error.reason == Reason.DATASET_INVALID and not obs.datasets.invalid


def derive_status(previous: TuningJobStatus | None, obs: RunObservation, *, now: datetime,
                  log_tail_lines: int) -> TuningJobStatus:
    """The TuningJob status for this observation, given the status it had."""
    before = previous or TuningJobStatus()
    fresh = _fresh(before, obs, now, log_tail_lines)
    if before.phase not in TERMINAL_PHASES or _may_leave_terminal(before, obs):
        return fresh
    same_run = fresh.phase == before.phase and obs.job is not None
    if same_run and before.result is None and fresh.result is not None:
        return fresh  # the Pod with the result was listed after the Job had completed
    # A finished run stays finished (its Job or Pods may be gone by TTL): only late figures and
    # the spec-change notice move.
    kept = [c for c in fresh.conditions if c.type == TuningJobCondition.SPEC_CHANGE_REJECTED]
    others = [c for c in before.conditions if c.type != TuningJobCondition.SPEC_CHANGE_REJECTED]
    update: dict[str, object] = {"conditions": ordered([*others, *kept], TuningJobCondition.ORDER),
                                 "observed_generation": obs.generation}
    if same_run and before.metrics is None and fresh.metrics is not None:
        update["metrics"] = fresh.metrics
    if same_run and fresh.usage != before.usage:  # the Pod's finish time, seen late
        update["usage"] = fresh.usage
    if same_run and not before.samples and fresh.samples:
        update["samples"] = fresh.samples
    return before.model_copy(update=update)
