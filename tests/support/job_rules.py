"""The Job controller's rules (Kubernetes 1.33, pkg/controller/job), as pure functions on dicts.

Which Pods are active, terminating, failed; how a failed Pod meets the Job's podFailurePolicy
(and the message the controller writes when a FailJob rule matches); Job conditions as the
controller writes them; the pod-failure back-off; and the merge patch that turns one status
into another. `job_controller.JobController` does the I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from support.kube_objects import JOB_TRACKING_FINALIZER, stamp

# The Job controller's defaults (job_controller.go): Pod events are batched for a second; a
# failed Pod is replaced after 10 s, doubling per failure, at most 10 minutes.
SYNC_BATCH_PERIOD = 1.0
POD_FAILURE_BACKOFF = 10.0
MAX_POD_FAILURE_BACKOFF = 600.0
# A sync that failed on the API (a Pod refused) is retried from 1 s, doubling, up to 60 s
# (the controller's DefaultJobApiBackOff and MaxJobApiBackOff).
API_BACKOFF = 1.0
MAX_API_BACKOFF = 60.0
CONCURRENT_JOB_SYNCS = 5  # kube-controller-manager --concurrent-job-syncs

BACKOFF_LIMIT_EXCEEDED = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE_EXCEEDED = ("DeadlineExceeded", "Job was active longer than specified deadline")
COMPLETIONS_REACHED = ("CompletionsReached", "Reached expected number of succeeded pods")

Obj = dict[str, Any]


def parse_stamp(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def phase(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def deleting(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def tracked(pod: Mapping[str, Any]) -> bool:
    """Whether the Pod still carries the finalizer by which the controller counts it."""
    return JOB_TRACKING_FINALIZER in ((pod.get("metadata") or {}).get("finalizers") or [])


def is_active(pod: Mapping[str, Any]) -> bool:
    """controller.FilterActivePods: neither finished nor being deleted."""
    return phase(pod) not in ("Succeeded", "Failed") and not deleting(pod)


def is_terminating(pod: Mapping[str, Any]) -> bool:
    return deleting(pod) and phase(pod) not in ("Succeeded", "Failed")


def only_replace_failed_pods(job: Mapping[str, Any]) -> bool:
    spec = job.get("spec") or {}
    return spec.get("podReplacementPolicy") == "Failed" or bool(spec.get("podFailurePolicy"))


def is_pod_failed(pod: Mapping[str, Any], job: Mapping[str, Any]) -> bool:
    if phase(pod) == "Failed":
        return True
    if only_replace_failed_pods(job):
        return False
    # A deleted Pod that never got to finish counts as failed.
    return deleting(pod) and phase(pod) != "Succeeded"


def _failed_container(pod: Mapping[str, Any], requirement: Mapping[str, Any]) -> Mapping[str, Any] | None:
    wanted = requirement.get("containerName")
    values = set(requirement.get("values") or [])
    for status in [*((pod.get("status") or {}).get("initContainerStatuses") or []),
                   *((pod.get("status") or {}).get("containerStatuses") or [])]:
        terminated = (status.get("state") or {}).get("terminated")
        if terminated is None or (wanted and wanted != status.get("name")):
            continue
        code = terminated.get("exitCode", 0)
        if code != 0 and ((code in values) == (requirement.get("operator") == "In")):
            return {"name": status.get("name"), "exitCode": code}
    return None


def _has_conditions(pod: Mapping[str, Any], patterns: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    conditions = (pod.get("status") or {}).get("conditions") or []
    for pattern in patterns:
        for condition in conditions:
            if (condition.get("type"), condition.get("status")) == (pattern.get("type"), pattern.get("status", "True")):
                return pattern
    return None


def match_pod_failure_policy(policy: Mapping[str, Any], pod: Mapping[str, Any]) -> tuple[str | None, bool]:
    """(the FailJob message if a FailJob rule matches, whether the failure counts toward backoffLimit).

    Rules are tried in order; the first match decides. No match: the failure counts.
    """
    meta = pod.get("metadata") or {}
    where = f"{meta.get('namespace')}/{meta.get('name')}"
    for index, rule in enumerate(policy.get("rules") or []):
        action = rule.get("action")
        if rule.get("onExitCodes"):
            container = _failed_container(pod, rule["onExitCodes"])
            if container is None:
                continue
            matched = (f"Container {container['name']} for pod {where} failed with exit code "
                       f"{container['exitCode']} matching FailJob rule at index {index}")
        elif rule.get("onPodConditions"):
            pattern = _has_conditions(pod, rule["onPodConditions"])
            if pattern is None:
                continue
            matched = f"Pod {where} has condition {pattern.get('type')} matching FailJob rule at index {index}"
        else:
            continue
        if action == "Ignore":
            return None, False
        if action == "FailJob":
            return matched, True
        return None, True  # Count, FailIndex
    return None, True


def fail_job_message(job: Mapping[str, Any], pods: list[Obj]) -> str | None:
    policy = (job.get("spec") or {}).get("podFailurePolicy")
    if not policy:
        return None
    for pod in pods:
        if is_pod_failed(pod, job):
            message, _ = match_pod_failure_policy(policy, pod)
            if message is not None:
                return message
    return None


def counts_as_failure(job: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    policy = (job.get("spec") or {}).get("podFailurePolicy")
    return match_pod_failure_policy(policy, pod)[1] if policy else True


# --- conditions ------------------------------------------------------------------------------------

def new_condition(type_: str, status: str, reason: str = "", message: str = "") -> Obj:
    now = stamp()
    condition: Obj = {"type": type_, "status": status, "lastProbeTime": now, "lastTransitionTime": now}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def find_condition(status: Mapping[str, Any], type_: str) -> Obj | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)


def true_condition(status: Mapping[str, Any], type_: str) -> Obj | None:
    condition = find_condition(status, type_)
    return condition if condition is not None and condition.get("status") == "True" else None


def ensure_condition(status: Obj, type_: str, value: str, reason: str, message: str) -> bool:
    """ensureJobConditionStatus: set the condition; a missing one is not added as False. Changed?"""
    current = find_condition(status, type_)
    if current is not None:
        if (current.get("status"), current.get("reason", ""), current.get("message", "")) == (value, reason, message):
            return False
        current.clear()
        current.update(new_condition(type_, value, reason, message))
        return True
    if value == "False":
        return False
    status.setdefault("conditions", []).append(new_condition(type_, value, reason, message))
    return True


def finished(job: Mapping[str, Any]) -> bool:
    status = job.get("status") or {}
    return true_condition(status, "Complete") is not None or true_condition(status, "Failed") is not None


# --- back-off and status writes --------------------------------------------------------------------

def backoff_remaining(failures: int, last_failure: float | None, now: float, base: float) -> float:
    """Seconds until a failed Pod may be replaced: base * 2^(failures-1) after the last failure."""
    if failures <= 0 or last_failure is None:
        return 0.0
    delay = min(base * 2 ** (failures - 1), MAX_POD_FAILURE_BACKOFF)
    return max(0.0, last_failure + delay - now)


def finished_at(pod: Mapping[str, Any]) -> float | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        when = parse_stamp(((status.get("state") or {}).get("terminated") or {}).get("finishedAt"))
        if when is not None:
            return when
    return None


def wire_status(status: Mapping[str, Any]) -> Obj:
    """The status as the API server serialises batch/v1 JobStatus: zero counters are omitted
    (`active`, `succeeded`, `failed` are omitempty); `ready`, `terminating` are pointers, kept at 0."""
    out = {k: v for k, v in status.items() if not (k in ("active", "succeeded", "failed") and not v)}
    uncounted = {k: v for k, v in (status.get("uncountedTerminatedPods") or {}).items() if v}
    out["uncountedTerminatedPods"] = uncounted
    return out
