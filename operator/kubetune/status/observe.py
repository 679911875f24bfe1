"""Turn batch/v1 Jobs and core/v1 Pods (plain dicts) into small observations; read result messages.

The observations are neutral: the operator fills them from the API server, the local mode from
a process it runs, and `kubetune.status` derives phase and conditions from either alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ValidationError

from kubetune.api import TrainerResult, ValidationReport
from kubetune.api.contract import PreflightReport, followed_another_failure
from kubetune.api.tolerant import drop_unknown_fields
from kubetune.builders.names import ANNOTATION_SPEC_HASH, ANNOTATION_WORK_DIR, KUEUE_QUEUE_LABEL

_MESSAGE_LIMIT: Final = 2048
M = TypeVar("M", bound=BaseModel)
# Resources every pod asks for; anything else in limits is an accelerator (nvidia.com/gpu, amd.com/gpu ...).
_ORDINARY_RESOURCES: Final = ("cpu", "memory", "ephemeral-storage")
# Set by the Job controller on each Pod of an Indexed Job (annotation always, label since 1.28).
COMPLETION_INDEX: Final = "batch.kubernetes.io/job-completion-index"


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp as the API server writes it (or a datetime), else None."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class JobObservation:
    """What a Job's metadata and status say. `failure_reason` is set once the Job has failed."""

    name: str = ""
    created_at: datetime | None = None
    suspended: bool = False
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    complete: bool = False
    failure_reason: str | None = None  # DeadlineExceeded, BackoffLimitExceeded, PodFailurePolicy ...
    failure_message: str | None = None
    failed_at: datetime | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None
    queue_name: str | None = None
    spec_hash: str | None = None
    work_dir: str | None = None  # the run folder the Job's Pods work in (pvc:CLAIM/PATH/runs/<run>)
    # The Job controller's last FailedCreate message while the Job has no Pod (read from its Events
    # by the controller, not in the Job itself); None: none seen.
    pods_refused: str | None = None


@dataclass(frozen=True)
class TerminatedState:
    exit_code: int | None = None
    reason: str | None = None  # OOMKilled, Error, Completed, DeadlineExceeded ...
    message: str | None = None  # the termination message: a result JSON, or the log tail
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class PodObservation:
    """What the newest Pod of a Job says about its (single) container."""

    name: str = ""
    phase: str | None = None  # Pending, Running, Succeeded, Failed, Unknown
    created_at: datetime | None = None
    running_since: datetime | None = None
    waiting_reason: str | None = None
    waiting_message: str | None = None
    unschedulable_message: str | None = None
    terminated: TerminatedState | None = None
    accelerators: tuple[tuple[str, str], ...] = ()  # (resource name, count) the container asks for
    memory_limit: str | None = None
    image_id: str | None = None  # the image as the kubelet resolved it (with its digest)

    @property
    def running(self) -> bool:
        return self.running_since is not None and self.terminated is None


def _job_condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in status.get("conditions") or ():
        if cond.get("type") == type_ and cond.get("status") == "True":
            return dict(cond)
    return None


def observe_job(job: Mapping[str, Any] | None) -> JobObservation | None:
    """A batch/v1 Job dict as an observation (None: there is no Job)."""
    if job is None:
        return None
    meta = job.get("metadata") or {}
    spec = job.get("spec") or {}
    status = job.get("status") or {}
    annotations = meta.get("annotations") or {}
    # FailureTarget comes before Failed (Kubernetes >= 1.31) while the pods are still being stopped.
    failed = _job_condition(status, "Failed") or _job_condition(status, "FailureTarget")
    complete = _job_condition(status, "Complete") is not None
    return JobObservation(
        name=str(meta.get("name") or ""),
        created_at=parse_time(meta.get("creationTimestamp")),
        suspended=bool(spec.get("suspend")),
        active=int(status.get("active") or 0),
        succeeded=int(status.get("succeeded") or 0),
        failed=int(status.get("failed") or 0),
        complete=complete and failed is None,
        failure_reason=(failed.get("reason") or "Failed") if failed is not None else None,
        failure_message=failed.get("message") if failed is not None else None,
        failed_at=parse_time(failed.get("lastTransitionTime")) if failed is not None else None,
        start_time=parse_time(status.get("startTime")),
        completion_time=parse_time(status.get("completionTime")),
        queue_name=(meta.get("labels") or {}).get(KUEUE_QUEUE_LABEL),
        spec_hash=annotations.get(ANNOTATION_SPEC_HASH),
        work_dir=annotations.get(ANNOTATION_WORK_DIR),
    )


def _newest(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    def key(pod: Mapping[str, Any]) -> tuple[str, str]:
        meta = pod.get("metadata") or {}
        return (str(meta.get("creationTimestamp") or ""), str(meta.get("name") or ""))

    return max(pods, key=key)


def completion_index(pod: Mapping[str, Any]) -> str | None:
    """The Pod's index in an Indexed Job (None for other Pods)."""
    meta = pod.get("metadata") or {}
    found = (meta.get("annotations") or {}).get(COMPLETION_INDEX) or (meta.get("labels") or {}).get(COMPLETION_INDEX)
    return str(found) if found is not None else None


def leader_pods(pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The Pods that speak for the run: of a multi-node run, index 0 (it runs rank 0, which prints
    progress and writes the result); of a one-Pod Job, all of them."""
    leaders = [p for p in pods if completion_index(p) == "0"]
    return leaders or [p for p in pods if completion_index(p) is None] or list(pods)


@dataclass(frozen=True)
class NodeFailure:
    """How a node other than 0 of a multi-node run failed: its Pod's own result."""

    node: str  # the Pod's completion index
    result: TrainerResult


def failure_elsewhere(pods: Sequence[Mapping[str, Any]], container_name: str | None = None) -> NodeFailure | None:
    """The failure of a node other than 0 that followed no other failure (its newest Pod's result),
    lowest index first: the cause, when node 0's processes only saw a collective break under them.
    None for a one-Pod Job, or when no other node has told of a failure of its own."""
    by_node: dict[int, list[Mapping[str, Any]]] = {}
    for pod in pods:
        index = completion_index(pod)
        if index is not None and index.isdigit() and index != "0":
            by_node.setdefault(int(index), []).append(pod)
    for node in sorted(by_node):
        state = _container_status(_newest(by_node[node]), container_name).get("state") or {}
        result = parse_termination_message((state.get("terminated") or {}).get("message"))
        if result is not None and result.status == "Failed" and not followed_another_failure(result):
            return NodeFailure(str(node), result)
    return None


def _container_status(pod: Mapping[str, Any], container_name: str | None) -> Mapping[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        if container_name is None or status.get("name") == container_name:
            return dict(status)
    return {}


def _container_spec(pod: Mapping[str, Any], container_name: str | None) -> Mapping[str, Any]:
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container_name is None or container.get("name") == container_name:
            return dict(container)
    return {}


def observe_pods(pods: Sequence[Mapping[str, Any]], container_name: str | None = None) -> PodObservation | None:
    """The newest of a Job's Pods (of a multi-node run: of its Pod 0) as an observation (None: no Pod yet).

    Retries make new Pods; the newest tells where the run is now.
    """
    if not pods:
        return None
    pod = _newest(leader_pods(pods))
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    container = _container_status(pod, container_name)
    state = container.get("state") or {}
    waiting = state.get("waiting") or {}
    running = state.get("running")
    terminated = state.get("terminated")

    unschedulable = None
    for cond in status.get("conditions") or ():
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and \
                cond.get("reason") == "Unschedulable":
            unschedulable = str(cond.get("message") or "no node fits the Pod")

    limits = (_container_spec(pod, container_name).get("resources") or {}).get("limits") or {}
    accelerators = tuple(sorted((str(k), str(v)) for k, v in limits.items()
                                if k not in _ORDINARY_RESOURCES and not str(k).startswith("hugepages-")))
    return PodObservation(
        name=str(meta.get("name") or ""),
        phase=status.get("phase"),
        created_at=parse_time(meta.get("creationTimestamp")),
        running_since=parse_time((running or {}).get("startedAt")) if running is not None else None,
        waiting_reason=waiting.get("reason"),
        waiting_message=waiting.get("message"),
        unschedulable_message=unschedulable,
        terminated=TerminatedState(
            exit_code=terminated.get("exitCode"),
            reason=terminated.get("reason"),
            message=terminated.get("message"),
            started_at=parse_time(terminated.get("startedAt")),
            finished_at=parse_time(terminated.get("finishedAt")),
        ) if terminated is not None else None,
        accelerators=accelerators,
        memory_limit=str(limits["memory"]) if "memory" in limits else None,
        image_id=str(container["imageID"]) if container.get("imageID") else None,
    )


@dataclass(frozen=True)
class PodTimes:
    """How long a Job's Pods have run, for status.usage: every attempt counts.

    The run time is wall time: the time at least one Pod ran (attempts one after another add up,
    the Pods of a multi-node run side by side count once); GPU time is that x GPUs per Pod x Pods.
    """

    finished_seconds: float = 0.0  # run time while only Pods that have finished ran
    running_since: datetime | None = None  # start of the Pods running now (the earliest)
    gpus: int = 0  # accelerators one Pod asks for
    pods: int = 1  # Pods that run side by side: a multi-node run's nodes

    @property
    def gpus_in_use(self) -> int:
        return self.gpus * self.pods


def pod_times(pods: Sequence[Mapping[str, Any]], container_name: str | None = None) -> PodTimes:
    """Run time of every Pod listed (a Pod already deleted is not; status keeps the larger figure)."""
    spans: list[tuple[datetime, datetime]] = []
    starts: list[datetime] = []
    gpus = 0
    for pod in pods:
        observed = observe_pods([pod], container_name)
        if observed is None:
            continue
        gpus = max(gpus, sum(int(count) for _, count in observed.accelerators if count.isdigit()))
        ended = observed.terminated
        if ended is not None and ended.started_at is not None and ended.finished_at is not None:
            spans.append((ended.started_at, ended.finished_at))
        elif observed.running_since is not None:
            starts.append(observed.running_since)
    running_since = min(starts) if starts else None
    if running_since is not None:  # what ran beside the running Pods counts with them
        spans = [(begin, min(end, running_since)) for begin, end in spans]
    indexes = {completion_index(pod) for pod in pods} - {None}
    return PodTimes(finished_seconds=_covered_seconds(spans), running_since=running_since, gpus=gpus,
                    pods=max(1, len(indexes)))


def _covered_seconds(spans: list[tuple[datetime, datetime]]) -> float:
    """Seconds covered by at least one of `spans` (overlaps count once)."""
    total = 0.0
    current: tuple[datetime, datetime] | None = None
    for begin, end in sorted(s for s in spans if s[1] > s[0]):
        if current is not None and begin <= current[1]:
            current = (current[0], max(current[1], end))
            continue
        if current is not None:
            total += (current[1] - current[0]).total_seconds()
        current = (begin, end)
    if current is not None:
        total += (current[1] - current[0]).total_seconds()
    return total


def _json_objects(text: str) -> list[dict[str, Any]]:
    """JSON objects in `text`: the whole text, else lines that hold one, last first.

    With FallbackToLogsOnError the kubelet puts the log tail there when no result was written.
    """
    candidates = [text.strip()] + [line.strip() for line in reversed(text.splitlines())]
    found: list[dict[str, Any]] = []
    for candidate in candidates:
        if not candidate.startswith("{"):
            continue
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def _parse(text: str | None, model: type[M]) -> M | None:
    if not text or not text.strip():
        return None
    for value in _json_objects(text):
        if isinstance(value.get("message"), str) and len(value["message"]) > _MESSAGE_LIMIT:
            value["message"] = value["message"][: _MESSAGE_LIMIT - 3] + "..."
        try:
            return model.model_validate(value)
        except ValidationError:
            pass
        # A trainer image newer than this operator may add fields: read what this side knows.
        known, dropped = drop_unknown_fields(value, model)
        if dropped:
            try:
                return model.model_validate(known)
            except ValidationError:
                continue
    return None


def parse_termination_message(text: str | None) -> TrainerResult | None:
    """The trainer's result from a termination message; None for a log tail, truncated JSON or garbage."""
    return _parse(text, TrainerResult)


def parse_preflight_report(text: str | None) -> PreflightReport | None:
    """The preflight's report from a termination message; None for anything else."""
    return _parse(text, PreflightReport)


def parse_validation_report(text: str | None) -> ValidationReport | None:
    """The validator's report from a termination message; None for anything else."""
    return _parse(text, ValidationReport)
