"""The shape every reconciler has, and the steps they share.

A pass over one object: observe it and its children in the cache -> derive its status with
the pure `kubetune.status` -> create missing children idempotently -> patch status and record
Events only for what changed. Passes run in the controller's worker threads, one at a time per
object (the work queue sees to it), so a reconciler keeps no locks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kubetune.builders import label_value
from kubetune.controller.cache import InformerCache
from kubetune.controller.objects import JOB, POD, ObjectKey, parent_of
from kubetune.controller.podrefusals import PodRefusals
from kubetune.controller.queue import WorkQueue
from kubetune.controller.recorder import EventRecorder
from kubetune.kube import KubeClient, Obj, merge_patch
from kubetune.metrics import OperatorMetrics
from kubetune.settings import Settings
from kubetune.status import EventRecord
from kubetune.status.observe import JobObservation


@dataclass
class ControllerContext:
    """What every reconciler works with; one per operator process."""

    settings: Settings
    kube: KubeClient
    cache: InformerCache
    queue: WorkQueue[ObjectKey]
    recorder: EventRecorder
    metrics: OperatorMetrics
    pod_refusals: PodRefusals


class Reconciler(Protocol):
    kind: str

    def reconcile(self, namespace: str, name: str) -> float | None:
        """One pass over the object as cached; seconds until it wants another pass without an event
        (None: only on events). Raises on API errors: the controller retries with backoff."""

    def needs_children(self, body: Mapping[str, Any]) -> bool:
        """Whether this version of the object may still need its children created: its pass
        goes ahead of the refreshes of objects that already have theirs."""

    def forget(self, namespace: str, name: str) -> None:
        """The object is gone: drop what is kept about it (metrics series)."""


def create_children(ctx: ControllerContext, config_map: Mapping[str, Any], job: Mapping[str, Any]) -> Obj:
    """Create the ConfigMap, then the Job; the Job as the API server holds it (also in the cache).

    AlreadyExists is success: names are deterministic, so what exists is what an earlier pass
    or an earlier operator process created; the existing Job is read back, once.
    ConfigMap first: a Job whose config is missing would start a Pod that cannot mount it.
    """
    ctx.kube.create(config_map)
    created = ctx.kube.create(job)
    if created is None:
        meta = job["metadata"]
        created = ctx.kube.get_job(meta.get("namespace") or "default", meta["name"])
        if created is None:  # deleted between our POST and GET: the next event brings news
            raise RuntimeError(f"Job {meta['name']} already existed but could not be read back")
    ctx.cache.write(JOB, created)
    return created


def publish(ctx: ControllerContext, kind: str, plural: str, body: Mapping[str, Any],
            before: Mapping[str, Any], after: Mapping[str, Any], events: Iterable[EventRecord]) -> None:
    """Patch the status from `before` to `after` if they differ (the answer goes into the cache),
    and record the Events of this step."""
    meta = body["metadata"]
    if after != before:
        patched = ctx.kube.patch_status(plural, meta.get("namespace") or "default", meta["name"],
                                        merge_patch(before, after))
        ctx.cache.write(kind, patched)
    for event in events:
        ctx.recorder.record(body, event.type, event.reason, event.message)


def job_is_over(job: JobObservation | None) -> bool:
    return job is not None and (job.complete or job.failure_reason is not None)


def pods_now(ctx: ControllerContext, namespace: str, job_name: str, owner_label: str, owner_name: str) -> list[Obj]:
    """The Job's Pods as the API server holds them now (written into the cache too).

    For the moment a Job is seen finished while its Pod in the cache has not terminated: the
    Job and its Pods come on separate watches, so the Job's last change may arrive first, and
    the Pod's termination message holds what the run is judged by (the trainer's result, the
    validator's report, an OOM kill). One read, once per run, instead of a wrong verdict.
    """
    found = ctx.kube.list_all("pods", namespaces=[namespace], labels={owner_label: label_value(owner_name)})
    pods = []
    for pod in found:
        pod = {"apiVersion": "v1", "kind": "Pod", **pod}
        ctx.cache.write(POD, pod)
        if parent_of(POD, pod) == (JOB, namespace, job_name):
            pods.append(pod)
    return pods
