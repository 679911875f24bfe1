"""Derive a Dataset's status from its validation Job, Pod and the validator's report (pure).

Each generation of a Dataset is validated once, by its own Job; a finished validation of the
current generation stays as it is, a new generation starts over.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from kubetune.api import Condition, DatasetPhase, DatasetStatus, ValidationReport, ValidationSummary
from kubetune.status.conditions import DatasetCondition, Reason, make_condition, ordered
from kubetune.status.diagnosis import VALIDATOR_OOM_ADVICE, Diagnosis, clip, explain_failure, explain_waiting
from kubetune.status.observe import JobObservation, PodObservation, parse_validation_report

FINISHED_PHASES: Final = frozenset({DatasetPhase.READY, DatasetPhase.INVALID, DatasetPhase.FAILED})


def _report_fields(report: ValidationReport) -> dict[str, Any]:
    return {name: getattr(report, name) for name in ValidationSummary.model_fields}


def _summary(report: ValidationReport) -> str:
    parts = [f"{report.valid_rows if report.valid_rows is not None else '?'} of "
             f"{report.rows if report.rows is not None else '?'} rows valid"]
    if report.detected_format is not None:
        parts.append(f"format {report.detected_format.value}")
    return ", ".join(parts)


def _invalid_message(report: ValidationReport) -> str:
    if report.message:
        return clip(report.message)
    count = report.error_count if report.error_count is not None else len(report.errors)
    first = report.errors[0] if report.errors else None
    detail = f"; first: row {first.row}: {first.message}" if first is not None else ""
    return clip(f"{count} defects found ({_summary(report)}){detail}")


def _finished_at(job: JobObservation | None, pod: PodObservation | None, now: datetime) -> datetime:
    candidates = [pod.terminated.finished_at if pod is not None and pod.terminated is not None else None]
    if job is not None:
        candidates += [job.completion_time, job.failed_at]
    return next((c for c in candidates if c is not None), now)


def derive_dataset_status(
    previous: DatasetStatus | None,
    *,
    generation: int | None,
    source: str,
    job_name: str,
    job: JobObservation | None,
    pod: PodObservation | None,
    report: ValidationReport | None = None,
    spec_error: str | None = None,
    now: datetime,
) -> DatasetStatus:
    """The Dataset status for this observation. `report`: the validator's report when it was read
    elsewhere (local mode); otherwise it is taken from the Pod's termination message."""
    same_generation = previous is not None and previous.observed_generation == generation
    if previous is not None and same_generation and previous.phase in FINISHED_PHASES:
        return previous
    conditions = previous.conditions if previous is not None else []
    if report is None and pod is not None and pod.terminated is not None:
        report = parse_validation_report(pod.terminated.message)

    phase: DatasetPhase
    summary: dict[str, Any] = {}
    failure: Diagnosis | None = None
    blocked: Diagnosis | None = None
    if spec_error:
        phase, failure = DatasetPhase.FAILED, Diagnosis(Reason.INVALID_SPEC, clip(spec_error))
        message = failure.message
    elif report is not None:
        summary = _report_fields(report)
        if report.outcome == "Ready":
            phase, message = DatasetPhase.READY, _summary(report)
        elif report.outcome == "Invalid":
            phase = DatasetPhase.INVALID
            failure = Diagnosis(report.reason.value if report.reason else Reason.INVALID_ROWS, _invalid_message(report))
            message = failure.message
        else:
            phase = DatasetPhase.FAILED
            failure = Diagnosis(report.reason.value if report.reason else Reason.VALIDATION_FAILED,
                                clip(report.message or "validation failed"))
            message = failure.message
    elif job is None:
        phase, message = DatasetPhase.PENDING, "the validation Job is being created"
    elif job.failure_reason is not None:
        phase = DatasetPhase.FAILED
        failure = explain_failure(job, pod, result_reason=None, result_message=None, oom_advice=VALIDATOR_OOM_ADVICE)
        message = failure.message
    elif job.complete:
        phase = DatasetPhase.FAILED
        failure = Diagnosis(Reason.VALIDATION_FAILED, "the validator finished without writing a report; "
                                                      f"see `kubectl logs job/{job.name}`")
        message = failure.message
    else:
        phase = DatasetPhase.VALIDATING
        blocked = explain_waiting(pod, job)
        message = blocked.message if blocked is not None else f"validating with Job {job.name}"

    def cond(type_: str, status: bool, reason: str, text: str) -> Condition:
        return make_condition(conditions, type_, status, reason, text, now=now, generation=generation)

    finished = phase in FINISHED_PHASES
    if phase is DatasetPhase.READY:
        ready = cond(DatasetCondition.READY, True, Reason.VALID, message)
        validated = cond(DatasetCondition.VALIDATED, True, Reason.VALID, message)
    elif failure is not None:
        ready = cond(DatasetCondition.READY, False, failure.reason, failure.message)
        validated = cond(DatasetCondition.VALIDATED, phase is DatasetPhase.INVALID, failure.reason, failure.message)
    else:
        waiting_reason = blocked.reason if blocked is not None else (
            Reason.VALIDATING if phase is DatasetPhase.VALIDATING else Reason.PENDING)
        ready = cond(DatasetCondition.READY, False, waiting_reason, message)
        validated = cond(DatasetCondition.VALIDATED, False, waiting_reason, message)

    return DatasetStatus(
        **summary,
        phase=phase,
        source=source,
        reason=failure.reason if failure is not None else None,
        message=message,
        job_name=job_name,
        validated_at=_finished_at(job, pod, now) if finished else None,
        observed_generation=generation,
        conditions=ordered([validated, ready], DatasetCondition.ORDER),
    )
