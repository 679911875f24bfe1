"""A run's verdict: which phase an observation puts it in, the message that says why, and its failure.

The rest of the status (conditions, progress, times) is derived around the verdict, in tuningjob.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubetune.api import FailureReason, TrainerResult, TuningJobPhase, TuningJobStatus
from kubetune.api.contract import followed_another_failure
from kubetune.api.progress import LogSummary, Stage
from kubetune.status.conditions import Reason, TuningJobCondition, is_true
from kubetune.status.diagnosis import Diagnosis, clip, explain_failure, explain_waiting
from kubetune.status.guardrails import PreflightStage, preflight_verdict
from kubetune.status.observe import parse_termination_message
from kubetune.status.runobservation import RunObservation


@dataclass(frozen=True)
class RunVerdict:
    phase: TuningJobPhase
    message: str
    running: tuple[bool, str]  # Running condition: status, reason
    failure: Diagnosis | None = None


def trainer_result(obs: RunObservation) -> TrainerResult | None:
    """The result the trainer left in its termination message, once its container has ended."""
    if obs.pod is None or obs.pod.terminated is None:
        return None
    return parse_termination_message(obs.pod.terminated.message)


def _log_lines(obs: RunObservation, previous: TuningJobStatus) -> list[str]:
    return obs.log.plain_lines if obs.log is not None else list(previous.log_tail)


def _failure(obs: RunObservation, result: TrainerResult | None, previous: TuningJobStatus) -> Diagnosis:
    failed_result = result if result is not None and result.status == "Failed" else None
    elsewhere = obs.failure_elsewhere
    if failed_result is not None and elsewhere is not None and followed_another_failure(failed_result):
        # Node 0's processes saw their collective break: the cause is the other node's own failure.
        failed_result = elsewhere.result.model_copy(
            update={"message": f"on node {elsewhere.node}: {elsewhere.result.message or elsewhere.result.reason}"})
    return explain_failure(
        obs.job, obs.pod,
        result_reason=failed_result.reason.value if failed_result and failed_result.reason else None,
        result_message=failed_result.message if failed_result else None,
        log_lines=_log_lines(obs, previous),
    )


def _running_message(log: LogSummary | None) -> str:
    if log is None or log.progress is None:
        if log is not None and log.stage is not None:
            return clip(f"{log.stage.stage.value}: {log.stage.message}" if log.stage.message else log.stage.stage)
        return "the trainer is running"
    p = log.progress
    parts = [f"step {p.step}/{p.total_steps}" + (f" ({p.percent}%)" if p.percent is not None else "")]
    if p.loss is not None:
        parts.append(f"loss {p.loss:.4g}")
    if p.eta_seconds is not None:
        parts.append(f"ETA {p.eta_seconds // 60}m{p.eta_seconds % 60:02d}s")
    return "training: " + ", ".join(parts)


def _success_message(result: TrainerResult | None) -> str:
    model = result.model if result is not None else None
    if model is not None and model.repo and model.revision:
        return f"the model was published to {model.repo}@{model.revision}"
    if model is not None and model.path:
        return f"the model was saved to {model.path}"
    return "the run succeeded"


def _verdict_without_job(previous: TuningJobStatus, obs: RunObservation) -> RunVerdict:
    if is_true(previous.conditions, TuningJobCondition.JOB_CREATED):
        failure = Diagnosis(Reason.JOB_DELETED, "the training Job was deleted before the run finished; "
                                                "to run again, create a new TuningJob")
        return RunVerdict(TuningJobPhase.FAILED, failure.message, (False, Reason.FAILED), failure)
    if obs.spec_error:
        failure = Diagnosis(Reason.INVALID_SPEC, clip(obs.spec_error))
        return RunVerdict(TuningJobPhase.FAILED, failure.message, (False, Reason.FAILED), failure)
    if obs.datasets.invalid and not obs.datasets.missing:
        bad = obs.datasets.diagnosis()
        failure = Diagnosis(Reason.DATASET_INVALID, clip(f"{bad.message}; fix the data: the run starts once the "
                                                         "Dataset validates as Ready"))
        return RunVerdict(TuningJobPhase.FAILED, failure.message, (False, Reason.FAILED), failure)
    if not obs.datasets.ready:
        waiting = obs.datasets.diagnosis()
        return RunVerdict(TuningJobPhase.WAITING_FOR_DATA, waiting.message, (False, Reason.NOT_CREATED))
    if obs.preflight is not None:
        checked = preflight_verdict(obs.preflight)
        if checked.failure is not None:  # no training Job is ever created: no GPU was used
            return RunVerdict(TuningJobPhase.FAILED, checked.failure.message, (False, Reason.FAILED), checked.failure)
        if checked.stage is not PreflightStage.PASSED:
            return RunVerdict(TuningJobPhase.PENDING, checked.message, (False, Reason.NOT_CREATED))
    return RunVerdict(TuningJobPhase.PENDING, "the training Job is being created", (False, Reason.NOT_CREATED))


def run_verdict(previous: TuningJobStatus, obs: RunObservation, result: TrainerResult | None) -> RunVerdict:
    """Where this observation puts a run whose status was `previous`; `result` is `trainer_result(obs)`."""
    job, pod = obs.job, obs.pod
    if job is None:
        return _verdict_without_job(previous, obs)
    if job.failure_reason is not None or (job.complete and result is not None and result.status == "Failed"):
        failure = _failure(obs, result, previous)
        return RunVerdict(TuningJobPhase.FAILED, failure.message, (False, Reason.FAILED), failure)
    if job.complete:
        return RunVerdict(TuningJobPhase.SUCCEEDED, _success_message(result), (False, Reason.COMPLETED))
    if job.suspended:
        if job.queue_name and not obs.suspend_requested:
            return RunVerdict(TuningJobPhase.PENDING, f"queued: waiting for Kueue to admit the Job to queue "
                                                    f"{job.queue_name}", (False, Reason.QUEUED))
        return RunVerdict(TuningJobPhase.SUSPENDED, "the run is suspended; set spec.suspend to false to resume",
                        (False, Reason.SUSPENDED))
    if pod is not None and pod.running:
        if obs.log is not None and obs.log.stage is not None and obs.log.stage.stage is Stage.PUBLISHING:
            message = clip(obs.log.stage.message) if obs.log.stage.message else "publishing the model"
            return RunVerdict(TuningJobPhase.PUBLISHING, message, (True, Reason.PUBLISHING))
        if obs.log is None and previous.phase is TuningJobPhase.PUBLISHING:
            return RunVerdict(TuningJobPhase.PUBLISHING, previous.message or "publishing the model",
                            (True, Reason.PUBLISHING))
        message = _running_message(obs.log) if obs.log is not None else (
            previous.message if previous.phase is TuningJobPhase.RUNNING and previous.message
            else "the trainer is running")
        return RunVerdict(TuningJobPhase.RUNNING, message, (True, Reason.RUNNING))
    if pod is not None and pod.terminated is not None:
        if pod.terminated.exit_code == 0:
            return RunVerdict(TuningJobPhase.RUNNING, "the trainer finished; waiting for the Job to complete",
                            (False, Reason.COMPLETED))
        attempt = _failure(obs, result, previous)
        if result is not None and result.reason is FailureReason.INTERRUPTED:
            # SIGTERM: preemption, eviction, a drained node, a deleted Pod. The Job retries it uncounted.
            return RunVerdict(TuningJobPhase.STARTING, clip(f"the trainer was stopped and saved a checkpoint "
                                                          f"({attempt.message}); a new Pod resumes from it"),
                            (False, Reason.RETRYING))
        return RunVerdict(TuningJobPhase.STARTING, clip(f"attempt {max(job.failed, 1)} failed ({attempt.reason}): "
                                                      f"{attempt.message}; a new Pod will be started"),
                        (False, Reason.RETRYING))
    blocked = explain_waiting(pod, job)
    if blocked is not None:
        return RunVerdict(TuningJobPhase.STARTING, blocked.message, (False, blocked.reason))
    detail = f" ({pod.waiting_reason})" if pod is not None and pod.waiting_reason else ""
    return RunVerdict(TuningJobPhase.STARTING, f"Job {job.name} created; waiting for the trainer Pod to start{detail}",
                    (False, Reason.STARTING))
