"""Why a Pod does not start, or why a run failed: one reason word and a message that says what to do.

Shared by TuningJob and Dataset status. Every message passes through `redact`: kubelet and
trainer messages end up in status and Events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from kubetune.api import FailureReason
from kubetune.api.redact import redact
from kubetune.status.conditions import BLOCKING_WAIT_REASONS, Reason
from kubetune.status.observe import JobObservation, PodObservation

MESSAGE_LIMIT: Final = 1024
_TAIL_LINES: Final = 3

TRAINER_OOM_ADVICE: Final = (
    "lower hyperparameters.perDeviceBatchSize and raise gradientAccumulationSteps to keep the effective "
    "batch, lower maxSeqLength, use method QLoRA, or raise resources.memory"
)
GPU_OOM_ADVICE: Final = (
    "lower hyperparameters.perDeviceBatchSize and raise gradientAccumulationSteps to keep the effective "
    "batch, lower maxSeqLength, or use method QLoRA"
)
VALIDATOR_OOM_ADVICE: Final = "raise the operator's validator memory (KUBETUNE_VALIDATOR_MEMORY)"

_WAIT_ADVICE: Final = {
    Reason.IMAGE_PULL_BACK_OFF: "check spec.trainerImage (or the operator's trainer image) and the registry access",
    Reason.ERR_IMAGE_PULL: "check spec.trainerImage (or the operator's trainer image) and the registry access",
    Reason.INVALID_IMAGE_NAME: "fix spec.trainerImage (or the operator's trainer image)",
    Reason.CREATE_CONTAINER_CONFIG_ERROR: "check that the Secrets named in hfTokenSecretRef and tokenSecretRef "
                                          "exist in the namespace and hold the key",
    Reason.CREATE_CONTAINER_ERROR: "see `kubectl describe pod` for the runtime's message",
}


@dataclass(frozen=True)
class Diagnosis:
    reason: str
    message: str


def clip(text: str, limit: int = MESSAGE_LIMIT) -> str:
    text = redact(text.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _tail(lines: Sequence[str]) -> str:
    kept = [line.strip() for line in lines if line.strip()][-_TAIL_LINES:]
    return " | ".join(kept)


def explain_waiting(pod: PodObservation | None, job: JobObservation | None = None) -> Diagnosis | None:
    """Why the Pod cannot start, when someone must act (or capacity must free up); None otherwise.

    A Job without a Pod whose Pods the API server refused (`job.pods_refused`: a ResourceQuota, a
    LimitRange, an admission policy) is told with the Job controller's message."""
    refused = job.pods_refused if job is not None and pod is None else None
    if refused:
        return Diagnosis(Reason.POD_CREATION_REFUSED, clip(
            f"the Job's Pod cannot be created: {refused.strip()}; {_refusal_advice(refused)}"))
    if pod is None or pod.terminated is not None:
        return None
    if pod.unschedulable_message:
        scheduler = pod.unschedulable_message.strip()
        short = [f"no node has {count} free {name}" for name, count in pod.accelerators
                 if f"Insufficient {name}" in scheduler]
        head = "; ".join(short) if short else "no node can run the Pod"
        return Diagnosis(Reason.UNSCHEDULABLE, clip(f"{head}: {scheduler}"))
    if pod.waiting_reason in BLOCKING_WAIT_REASONS:
        detail = f": {pod.waiting_message.strip()}" if pod.waiting_message else ""
        advice = _WAIT_ADVICE.get(pod.waiting_reason, "")
        return Diagnosis(pod.waiting_reason,
                         clip(f"the container cannot start ({pod.waiting_reason}){detail}; {advice}".rstrip("; ")))
    return None


def _refusal_advice(message: str) -> str:
    if "exceeded quota" in message:
        return ("the namespace's ResourceQuota has no room: lower spec.resources (gpus, cpu, memory), wait for other "
                "work to finish, or ask for more quota; the Job keeps trying")
    if "LimitRange" in message or "maximum" in message or "minimum" in message:
        return "the namespace's LimitRange does not allow these resources: change spec.resources to fit it"
    return "an admission policy refused it (the message names the rule); the Job keeps trying"


def _output_tail(pod: PodObservation | None, log_lines: Sequence[str]) -> str:
    """The last lines the container printed: its termination message (a log tail) or the log."""
    if pod is not None and pod.terminated is not None and pod.terminated.message:
        text = pod.terminated.message.strip()
        if not text.startswith("{"):
            return _tail(text.splitlines())
    return _tail(log_lines)


def explain_failure(
    job: JobObservation | None,
    pod: PodObservation | None,
    *,
    result_reason: str | None,
    result_message: str | None,
    log_lines: Sequence[str] = (),
    oom_advice: str = TRAINER_OOM_ADVICE,
) -> Diagnosis:
    """The most specific cause of a failed run: deadline, the program's own reason, OOM kill, Job reason."""
    if job is not None and job.failure_reason == Reason.DEADLINE_EXCEEDED:
        detail = f" ({job.failure_message})" if job.failure_message else ""
        return Diagnosis(Reason.DEADLINE_EXCEEDED, clip(
            f"the run took longer than activeDeadlineSeconds and was stopped{detail}; "
            "raise activeDeadlineSeconds or train for fewer steps"))
    if result_reason:
        message = result_message or f"the program stopped: {result_reason}"
        if result_reason == FailureReason.OUT_OF_MEMORY and "batch" not in message.lower():
            message = f"{message}; {GPU_OOM_ADVICE}"
        return Diagnosis(result_reason, clip(message))
    terminated = pod.terminated if pod is not None else None
    if terminated is not None and terminated.reason == Reason.OOM_KILLED:
        limit = f" of {pod.memory_limit}" if pod is not None and pod.memory_limit else ""
        return Diagnosis(Reason.OOM_KILLED, clip(
            f"the container ran out of memory (limit{limit}) and was killed; {oom_advice}"))
    tail = _output_tail(pod, log_lines)
    exit_part = ""
    if terminated is not None and terminated.exit_code not in (None, 0):
        exit_part = f"the container exited with code {terminated.exit_code}"
        if terminated.reason and terminated.reason not in ("Error", "Completed"):
            exit_part += f" ({terminated.reason})"
    parts = [p for p in (job.failure_message if job is not None else None, exit_part,
                         f"last output: {tail}" if tail else "") if p]
    reason = (job.failure_reason if job is not None else None) or Reason.FAILED
    return Diagnosis(reason, clip("; ".join(parts) or "the run failed"))
