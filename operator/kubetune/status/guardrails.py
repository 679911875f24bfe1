"""The guardrails' part of a TuningJob's status: the preflight's verdict and condition, status.usage
and status.pinned. Pure: fed observations, as the rest of the status derivation.

The preflight is a CPU Job run before the training Job; its report (the Pod's termination
message) decides: Passed creates the training Job, Failed ends the run with the first error's
reason (AuthFailed, ModelGated, OutputNotWritable, ...) and no training Job ever exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from kubetune.api import ConditionStatus, Dataset, TrainingMetrics, TrainingProgress, TuningJobSpec
from kubetune.api.contract import FailureReason, PreflightReport, TrainerResult
from kubetune.api.guardrails import PinnedDataset, PinnedRevisions, Usage, source_name
from kubetune.api.progress import LogSummary
from kubetune.status.conditions import Reason
from kubetune.status.diagnosis import Diagnosis, clip, explain_waiting
from kubetune.status.observe import JobObservation, PodObservation, PodTimes, parse_preflight_report


class PreflightStage(Enum):
    NOT_STARTED = "not started"
    CHECKING = "checking"
    PASSED = "passed"
    FAILED = "failed"


@dataclass(frozen=True)
class PreflightObservation:
    """The preflight Job and its newest Pod (None: not created yet)."""

    job: JobObservation | None = None
    pod: PodObservation | None = None

    @property
    def report(self) -> PreflightReport | None:
        if self.pod is None or self.pod.terminated is None:
            return None
        return parse_preflight_report(self.pod.terminated.message)


@dataclass(frozen=True)
class PreflightVerdict:
    stage: PreflightStage
    reason: str
    message: str
    report: PreflightReport | None = None

    @property
    def failure(self) -> Diagnosis | None:
        return Diagnosis(self.reason, self.message) if self.stage is PreflightStage.FAILED else None


def preflight_verdict(obs: PreflightObservation) -> PreflightVerdict:
    """Where the preflight is; a Failed report is final unless it blamed the network and the Job retries."""
    job, pod, report = obs.job, obs.pod, obs.report
    if job is None:
        return PreflightVerdict(PreflightStage.NOT_STARTED, Reason.CHECKING,
                                "the preflight Job is being created")
    if report is not None and report.outcome == "Passed":
        return PreflightVerdict(PreflightStage.PASSED, _passed_reason(report), _passed_message(report), report)
    if report is not None and (not report.retryable or job.failure_reason is not None):
        errors = report.errors or report.issues
        reason = errors[0].reason.value if errors else Reason.PREFLIGHT_FAILED
        what = "; ".join(f"{e.message}" for e in errors) or "the preflight failed"
        return PreflightVerdict(PreflightStage.FAILED, reason, clip(f"preflight: {what}"), report)
    if job.failure_reason is not None or (job.complete and pod is not None and pod.terminated is not None):
        what = f"failed: {job.failure_reason}" if job.failure_reason is not None else "ended without a report"
        detail = f" ({job.failure_message})" if job.failure_message else ""
        return PreflightVerdict(PreflightStage.FAILED, Reason.PREFLIGHT_FAILED, clip(
            f"the preflight Job {job.name} {what}{detail}; see kubectl logs job/{job.name}. A trainer image older "
            "than the operator has no preflight: use a matching image, or set spec.guardrails.preflight: false"))
    blocked = explain_waiting(pod, job)
    if blocked is not None:
        return PreflightVerdict(PreflightStage.CHECKING, blocked.reason, clip(f"preflight: {blocked.message}"))
    message = "preflight: checking the token, base model, output repo, data and GPU memory before a GPU is used"
    if report is not None:  # failed on the network: the Job starts another attempt
        message = clip(f"preflight: retrying after: {'; '.join(e.message for e in report.errors)}")
    return PreflightVerdict(PreflightStage.CHECKING, Reason.CHECKING, message, report)


def _passed_reason(report: PreflightReport) -> str:
    return Reason.WONT_FIT if any(w.reason is FailureReason.WONT_FIT for w in report.warnings) \
        else Reason.PASSED


def _passed_message(report: PreflightReport) -> str:
    checked = ", ".join(report.checked) or "nothing to check"
    message = f"checked {checked}"
    if report.warnings:
        message += "; warning: " + "; ".join(f"{w.reason.value}: {w.message}" for w in report.warnings)
    return clip(message)


# --- status.pinned ------------------------------------------------------------------------

def pinned_datasets(spec: TuningJobSpec, datasets: Mapping[str, Dataset],
                    report: PreflightReport | None) -> list[PinnedDataset]:
    """Each dataset of the run and its revision: a Dataset's validated commit (or content hash),
    an inline Hub source's commit from the preflight."""
    resolved = {d.name: d.revision for d in report.datasets} if report is not None else {}
    pins: dict[str, str | None] = {}
    for entry in [*spec.datasets.train, *spec.datasets.validation]:
        if entry.dataset is not None:
            found = datasets.get(entry.dataset)
            pins[entry.dataset] = found.status.revision if found is not None and found.status is not None else None
        elif entry.source is not None:
            name = source_name(entry.source)
            pins[name] = resolved.get(name)
    return [PinnedDataset(name=name, revision=revision) for name, revision in pins.items()]


def derive_pinned(previous: PinnedRevisions | None, *, base_model_revision: str | None,
                  datasets: list[PinnedDataset] | None, image_id: str | None) -> PinnedRevisions | None:
    """What was recorded first stays: a pin is a fact about the run, not about the present."""
    before = previous or PinnedRevisions()
    pinned = PinnedRevisions(
        base_model_revision=before.base_model_revision or base_model_revision,
        datasets=before.datasets or list(datasets or []),
        trainer_image=before.trainer_image or image_id,
    )
    return None if pinned == PinnedRevisions() else pinned


# --- status.usage -------------------------------------------------------------------------

def derive_usage(previous: Usage | None, times: PodTimes, *, at: datetime | None,
                 progress: TrainingProgress | None, tokens: int | None,
                 metrics: TrainingMetrics | None) -> Usage | None:
    """GPU and wall seconds of every trainer Pod, tokens and throughput. GPU seconds = GPUs per Pod x
    Pods x run time (a multi-node run's Pods all hold their GPUs while it runs).

    A running Pod counts up to `at` (when progress was last read, or the run ended), not to
    "now": the same observation gives the same usage, so a pass patches nothing new.
    Figures never go down (a finished Pod deleted by its TTL no longer shows in `times`).
    """
    before = previous or Usage()
    wall = times.finished_seconds
    if times.running_since is not None and at is not None:
        wall += max(0.0, (at - times.running_since).total_seconds())
    wall = max(wall, before.wall_seconds or 0.0)
    gpu_seconds = wall * times.gpus_in_use if times.gpus_in_use else None
    trained = metrics.trained_tokens if metrics is not None and metrics.trained_tokens is not None else tokens
    speed = progress.tokens_per_second if progress is not None else None
    if metrics is not None and metrics.trained_tokens and metrics.runtime_seconds:
        speed = metrics.trained_tokens / metrics.runtime_seconds
    usage = Usage(
        wall_seconds=round(wall, 1) if wall else before.wall_seconds,
        gpu_seconds=max(round(gpu_seconds, 1), before.gpu_seconds or 0.0) if gpu_seconds else before.gpu_seconds,
        trained_tokens=max(trained, before.trained_tokens or 0) if trained is not None else before.trained_tokens,
        tokens_per_second=round(speed, 1) if speed is not None else before.tokens_per_second,
    )
    return None if usage == Usage() else usage



# --- the parts derive_status asks for ------------------------------------------------------------

def preflight_condition(obs: PreflightObservation | None) -> tuple[ConditionStatus, str, str] | None:
    """PreflightPassed as (status, reason, message); None when there is nothing to say (preflight off)."""
    if obs is None:
        return None
    verdict = preflight_verdict(obs)
    status = {PreflightStage.PASSED: ConditionStatus.TRUE, PreflightStage.FAILED: ConditionStatus.FALSE}.get(
        verdict.stage, ConditionStatus.UNKNOWN)
    return status, verdict.reason, verdict.message


def run_pinned(previous: PinnedRevisions | None, *, preflight: PreflightObservation | None, job_started: bool,
               datasets: list[PinnedDataset], pod: PodObservation | None,
               result: TrainerResult | None) -> PinnedRevisions | None:
    """status.pinned once the run starts (its preflight passed, or its Job exists): the preflight's
    commits, the datasets' revisions, and later the trainer's own report and the image digest."""
    report = preflight.report if preflight is not None else None
    passed = report is not None and report.outcome == "Passed"
    trained_on = result.model.base_model_revision if result is not None and result.model is not None else None
    return derive_pinned(
        previous,
        base_model_revision=(report.base_model_revision if passed and report is not None else None) or trained_on,
        datasets=datasets if job_started or passed else None,
        image_id=pod.image_id if pod is not None else None,
    )


def run_usage(previous: Usage | None, times: PodTimes, pod: PodObservation | None, log: LogSummary | None,
              progress: TrainingProgress | None, result: TrainerResult | None) -> Usage | None:
    """status.usage for this observation. A running Pod counts up to the latest progress, not to
    now: a pass that reads nothing new writes nothing new."""
    running = pod is not None and pod.running and progress is not None
    return derive_usage(previous, times, at=progress.updated_at if running and progress is not None else None,
                        progress=progress, metrics=result.metrics if result is not None else None,
                        tokens=log.progress.tokens if log is not None and log.progress is not None else None)
