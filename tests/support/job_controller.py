"""A Job controller for the emulated cluster: kube-controller-manager's, request for request.

It watches Jobs and Pods over HTTP (list, then watch from the list's version) and syncs a Job
as pkg/controller/job (1.33) does for non-indexed Jobs: at once on a Job's create or spec
change, a second after its Pods' changes (`batch_period`, coalescing them), several Jobs at a
time (`workers`). A sync

- creates the Pod from the template (generateName `<job>-`, the controller labels, an owning
  controller reference, the job-tracking finalizer) and posts SuccessfulCreate; a Pod the API
  server refuses (a ResourceQuota, admission) is a Warning FailedCreate "Error creating: ..." on
  the Job and another sync after a back-off (1 s doubling to 60 s), with the Job's status as it was;
- writes status: startTime, active, ready, terminating; a finished Pod first goes into
  uncountedTerminatedPods, its finalizer is removed, then it is counted in succeeded/failed;
- finishes the Job in two writes, the interim condition (SuccessCriteriaMet, or FailureTarget
  with BackoffLimitExceeded, DeadlineExceeded or PodFailurePolicy) and then Complete (with
  completionTime) or Failed, and posts Completed or the failure reason as an Event;
- replaces a failed Pod while backoffLimit allows, after the pod-failure back-off (10 s,
  doubling); honours podFailurePolicy (FailJob, Ignore, Count);
- on suspend removes the finalizers of active Pods and deletes them (Suspended condition,
  Suspended Event); on resume creates a Pod again (Suspended False, startTime reset, Resumed).

kube-controller-manager sends its UpdateStatus as a PUT; kmock serves no PUT, so status goes
as a merge patch of the status subresource: one write and one watch event either way. Indexed
Jobs get a Pod per free completion index (annotation, label, host name, JOB_COMPLETION_INDEX)
and complete when `completions` Pods succeeded. Not emulated: per-index back-off limits,
successPolicy, managedBy, graceful Pod deletion (the emulator deletes at once), the
TTL-after-finished and garbage collectors.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from collections import defaultdict
from typing import Any

import aiohttp

from kubetune.kube import merge_patch
from support.job_rules import (
    API_BACKOFF,
    BACKOFF_LIMIT_EXCEEDED,
    COMPLETIONS_REACHED,
    CONCURRENT_JOB_SYNCS,
    DEADLINE_EXCEEDED,
    MAX_API_BACKOFF,
    POD_FAILURE_BACKOFF,
    SYNC_BATCH_PERIOD,
    Obj,
    backoff_remaining,
    counts_as_failure,
    ensure_condition,
    fail_job_message,
    finished,
    finished_at,
    is_active,
    is_pod_failed,
    is_terminating,
    new_condition,
    parse_stamp,
    phase,
    tracked,
    true_condition,
    wire_status,
)
from support.kube_client import ApiError, RigClient
from support.kube_objects import COMPLETION_INDEX, JOB_TRACKING_FINALIZER, core_event, is_ready, pod_for_job, stamp
from support.kube_workqueue import WorkQueue

JOBS = "batch/v1/jobs"
PODS = "v1/pods"
EVENTS = "v1/events"
Key = tuple[str, str]


def _key(obj: Obj) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace", "default"), meta["name"]


def _version(obj: Obj) -> int:
    value = str((obj.get("metadata") or {}).get("resourceVersion") or "0")
    return int(value) if value.isdigit() else 0


def _owner_uid(pod: Obj) -> str | None:
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "Job":
            return str(ref.get("uid"))
    return None


class JobController:
    """The Job controller of the emulated cluster; `start()` on an event loop, `stop()` on the same."""

    def __init__(self, client: RigClient, *, batch_period: float = SYNC_BATCH_PERIOD,
                 pod_failure_backoff: float = POD_FAILURE_BACKOFF, workers: int = CONCURRENT_JOB_SYNCS,
                 max_api_backoff: float = MAX_API_BACKOFF) -> None:
        self.client = client
        self.max_api_backoff = max_api_backoff
        self.batch_period = batch_period
        self.pod_failure_backoff = pod_failure_backoff
        self.jobs: dict[Key, Obj] = {}
        self.pods: dict[Key, Obj] = {}
        self.syncs = 0
        self._pods_of: dict[str, set[Key]] = defaultdict(set)  # Job uid -> its Pods
        self._queue: WorkQueue[Key] = WorkQueue(self._sync, workers)
        self._failures: dict[Key, tuple[int, float | None]] = {}  # failures since the last success, when
        self._refusals: dict[Key, int] = {}  # Pods refused by the API server in a row
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()

    # --- informers and the work queue -------------------------------------------------------------

    async def start(self) -> None:
        jobs, jobs_version = await self.client.list(JOBS)
        pods, pods_version = await self.client.list(PODS)
        for pod in pods:
            self._store_pod(pod)
        for job in jobs:
            self.jobs[_key(job)] = job
            self._queue.add(_key(job))
        self._tasks = [asyncio.create_task(self._watch(JOBS, jobs_version, self._on_job)),
                       asyncio.create_task(self._watch(PODS, pods_version, self._on_pod)),
                       *self._queue.start()]

    async def stop(self) -> None:
        for task in [*self._tasks, *self._background]:
            task.cancel()
        for task in [*self._tasks, *self._background]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.client.close()

    async def _watch(self, resource: str, since: str, handle: Any) -> None:
        while True:
            try:
                async for event in self.client.watch(resource, since):
                    since = str(event["object"]["metadata"].get("resourceVersion") or since)
                    handle(event["type"], event["object"])
            except (aiohttp.ClientError, ApiError, ValueError):
                pass
            await asyncio.sleep(0.2)

    def _on_job(self, kind: str, job: Obj) -> None:
        key = _key(job)
        if kind == "DELETED":
            self.jobs.pop(key, None)
            self._failures.pop(key, None)
            uid = job["metadata"].get("uid")
            for pod_key in list(self._pods_of.get(str(uid), ())):
                pod = self.pods.get(pod_key)
                if pod is not None and tracked(pod):
                    self._spawn(self._remove_finalizer(pod))  # orphaned Pods are let go
            return
        old = self.jobs.get(key)
        if old is not None and _version(old) > _version(job):
            return
        self.jobs[key] = job
        spec_changed = old is None or old["metadata"].get("generation") != job["metadata"].get("generation")
        self._queue.add(key, 0 if spec_changed else self.batch_period)

    def _store_pod(self, pod: Obj) -> None:
        key = _key(pod)
        old = self.pods.get(key)
        if old is not None and _version(old) > _version(pod):
            return
        self.pods[key] = pod
        uid = _owner_uid(pod)
        if uid is not None:
            self._pods_of[uid].add(key)

    def _on_pod(self, kind: str, pod: Obj) -> None:
        key = _key(pod)
        if kind == "DELETED":
            self.pods.pop(key, None)
            uid = _owner_uid(pod)
            if uid is not None:
                self._pods_of[uid].discard(key)
        else:
            self._store_pod(pod)
        for ref in pod["metadata"].get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == "Job":
                self._queue.add((key[0], ref["name"]), self.batch_period)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _event(self, obj: Obj, reason: str, message: str, type_: str = "Normal") -> None:
        """Events go out in the background, as client-go's broadcaster sends them."""
        self._spawn(self._post(core_event(obj, reason, message, component="job-controller", type_=type_)))

    async def _post(self, event: Obj) -> None:
        with contextlib.suppress(ApiError, aiohttp.ClientError):
            await self.client.create(EVENTS, event)

    # --- syncJob ----------------------------------------------------------------------------------

    def _owned_pods(self, job: Obj) -> list[Obj]:
        keys = self._pods_of.get(str(job["metadata"].get("uid")), set())
        return [self.pods[k] for k in sorted(keys) if k in self.pods]

    async def _sync(self, key: Key) -> None:
        job = self.jobs.get(key)
        if job is None or finished(job):
            self._failures.pop(key, None)
            return
        self.syncs += 1
        spec = job.get("spec") or {}
        status: Obj = copy.deepcopy(job.get("status") or {})
        uncounted = status.setdefault("uncountedTerminatedPods", {})
        pods = self._owned_pods(job)
        active_pods = [p for p in pods if is_active(p)]
        active, ready = len(active_pods), sum(1 for p in active_pods if is_ready(p))
        terminating = sum(1 for p in pods if is_terminating(p))
        counted_ok, counted_failed = set(uncounted.get("succeeded") or []), set(uncounted.get("failed") or [])
        new_ok = [p for p in pods if tracked(p) and p["metadata"]["uid"] not in counted_ok and phase(p) == "Succeeded"]
        new_failed = [p for p in pods if tracked(p) and p["metadata"]["uid"] not in counted_failed
                      and is_pod_failed(p, job)]
        succeeded = int(status.get("succeeded") or 0) + len(new_ok) + len(counted_ok)
        failed = int(status.get("failed") or 0) + len(counted_failed) + \
            sum(1 for p in new_failed if counts_as_failure(job, p))
        suspended = bool(spec.get("suspend"))
        if not status.get("startTime") and not suspended:
            status["startTime"] = stamp()
        self._record_failures(key, job, new_ok, new_failed)

        verdict = true_condition(status, "SuccessCriteriaMet")
        if verdict is None:
            target = true_condition(status, "FailureTarget")
            if target is not None:
                verdict = new_condition("Failed", "True", target.get("reason", ""), target.get("message", ""))
            elif (message := fail_job_message(job, pods)) is not None:
                verdict = new_condition("FailureTarget", "True", "PodFailurePolicy", message)
        if verdict is None:
            deadline = spec.get("activeDeadlineSeconds")
            started = parse_stamp(status.get("startTime"))
            if failed > int(spec.get("backoffLimit", 6)):
                verdict = new_condition("FailureTarget", "True", *BACKOFF_LIMIT_EXCEEDED)
            elif deadline is not None and started is not None and not suspended:
                left = started + int(deadline) - time.time()
                if left <= 0:
                    verdict = new_condition("FailureTarget", "True", *DEADLINE_EXCEEDED)
                else:
                    self._queue.add(key, left)

        suspend_changed = False
        if verdict is not None:
            deleted, deleted_ready = await self._delete_pods(active_pods, remove_finalizers=False)
            active, ready, terminating = active - deleted, ready - deleted_ready, terminating + deleted
        else:
            active, ready, terminating = await self._manage(key, job, active_pods, active, ready, terminating,
                                                            succeeded)
            completions = spec.get("completions")
            if (succeeded >= int(completions) if completions is not None else succeeded > 0) and active == 0:
                verdict = new_condition("SuccessCriteriaMet", "True", *COMPLETIONS_REACHED)
            elif suspended:
                suspend_changed = ensure_condition(status, "Suspended", "True", "JobSuspended", "Job suspended")
                if suspend_changed:
                    self._event(job, "Suspended", "Job suspended")
            else:
                suspend_changed = ensure_condition(status, "Suspended", "False", "JobResumed", "Job resumed")
                if suspend_changed:
                    self._event(job, "Resumed", "Job resumed")
                    status["startTime"] = stamp()  # the deadline counts from the resume
        needs_write = suspend_changed or active != int(status.get("active") or 0) \
            or ready != status.get("ready") or terminating != status.get("terminating")
        status.update(active=active, ready=ready, terminating=terminating)
        await self._track(key, job, pods, status, verdict, terminating, needs_write)

    def _record_failures(self, key: Key, job: Obj, new_ok: list[Obj], new_failed: list[Obj]) -> None:
        if new_ok and not new_failed:
            self._failures[key] = (0, None)
        elif new_failed:
            count, _ = self._failures.get(key, (0, None))
            last = max((finished_at(p) or time.time() for p in new_failed), default=time.time())
            self._failures[key] = (count + len(new_failed), last)

    async def _manage(self, key: Key, job: Obj, active_pods: list[Obj], active: int, ready: int, terminating: int,
                      succeeded: int) -> tuple[int, int, int]:
        """manageJob: the Pods that should run, created or deleted; (active, ready, terminating)."""
        spec = job.get("spec") or {}
        if spec.get("suspend"):
            removed, removed_ready = await self._delete_pods(active_pods, remove_finalizers=True)
            return active - removed, ready - removed_ready, terminating + removed
        parallelism = int(spec.get("parallelism", 1))
        completions = spec.get("completions")
        if completions is None:
            wanted = active if succeeded > 0 else parallelism
        else:
            wanted = max(0, min(int(completions) - succeeded, parallelism))
        if active > wanted:
            removed, removed_ready = await self._delete_pods(active_pods[wanted:], remove_finalizers=True)
            return active - removed, ready - removed_ready, terminating + removed
        missing = wanted - active - (terminating if spec.get("podFailurePolicy")
                                     or spec.get("podReplacementPolicy") == "Failed" else 0)
        if missing <= 0:
            return active, ready, terminating
        failures, last = self._failures.get(key, (0, None))
        wait = backoff_remaining(failures, last, time.time(), self.pod_failure_backoff)
        if wait > 0:
            self._queue.add(key, max(wait, self.batch_period))
            return active, ready, terminating
        indexes: list[int | None] = [None] * missing
        if spec.get("completionMode") == "Indexed" and completions is not None:
            # The lowest indexes that neither run nor have succeeded.
            taken = {(p["metadata"].get("annotations") or {}).get(COMPLETION_INDEX)
                     for p in self._owned_pods(job) if is_active(p) or phase(p) == "Succeeded"}
            indexes = [i for i in range(int(completions)) if str(i) not in taken][:missing]
        for index in indexes:
            try:
                pod = await self.client.create(PODS, pod_for_job(job, index))
            except ApiError as exc:
                if exc.status not in (400, 403, 422):
                    raise
                # The API server refused the Pod (a ResourceQuota, an admission policy): a Warning on
                # the Job, nothing in its status, and the sync again after a growing back-off.
                self._event(job, "FailedCreate", f"Error creating: {exc.message}", type_="Warning")
                refusals = self._refusals.get(key, 0)
                self._refusals[key] = refusals + 1
                self._queue.add(key, min(self.max_api_backoff, API_BACKOFF * 2 ** refusals))
                break
            self._refusals.pop(key, None)
            self._store_pod(pod)
            self._event(job, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")
            active += 1
        return active, ready, terminating

    async def _delete_pods(self, pods: list[Obj], *, remove_finalizers: bool) -> tuple[int, int]:
        deleted = deleted_ready = 0
        for pod in pods:
            namespace, name = _key(pod)
            try:
                if remove_finalizers and tracked(pod):
                    await self._remove_finalizer(pod)
                await self.client.delete(PODS, namespace, name)
            except ApiError as exc:
                if exc.status != 404:
                    raise
            deleted += 1
            deleted_ready += int(is_ready(pod))
        return deleted, deleted_ready

    async def _remove_finalizer(self, pod: Obj) -> None:
        namespace, name = _key(pod)
        finalizers = [f for f in pod["metadata"].get("finalizers") or [] if f != JOB_TRACKING_FINALIZER]
        try:  # an empty list is not serialised: the key goes
            self._store_pod(await self.client.patch(PODS, namespace, name,
                                                    {"metadata": {"finalizers": finalizers or None}}))
        except ApiError as exc:
            if exc.status != 404:
                raise

    async def _write_status(self, key: Key, status: Obj) -> None:
        job = self.jobs[key]
        patch = merge_patch(job.get("status") or {}, wire_status(status))
        if patch:
            namespace, name = key
            stored = await self.client.patch(JOBS, namespace, name, {"status": patch}, subresource="status")
            if _version(stored) >= _version(self.jobs.get(key, stored)):
                self.jobs[key] = stored

    async def _track(self, key: Key, job: Obj, pods: list[Obj], status: Obj, verdict: Obj | None, terminating: int,
                     needs_write: bool) -> None:
        """trackJobStatusAndRemoveFinalizers: count finished Pods, let them go, finish the Job."""
        uncounted = status["uncountedTerminatedPods"]
        with_finalizer = {p["metadata"]["uid"] for p in pods if tracked(p)}
        needs_write = _count_released(status, with_finalizer) or needs_write
        releasing = []
        for pod in pods:
            if not tracked(pod):
                continue
            uid, pod_failed = pod["metadata"]["uid"], is_pod_failed(pod, job)
            if not (verdict is not None or phase(pod) == "Succeeded" or pod_failed):
                continue
            releasing.append(pod)
            if phase(pod) == "Succeeded" and uid not in (uncounted.get("failed") or []):
                if uid not in (uncounted.get("succeeded") or []):
                    uncounted.setdefault("succeeded", []).append(uid)
                    needs_write = True
            elif (pod_failed or (verdict is not None and verdict["type"] != "SuccessCriteriaMet")) \
                    and uid not in (uncounted.get("failed") or []) and counts_as_failure(job, pod):
                uncounted.setdefault("failed", []).append(uid)
                needs_write = True
        if verdict is not None and verdict["type"] == "FailureTarget":
            status.setdefault("conditions", []).append(verdict)
            needs_write = True
            verdict = new_condition("Failed", "True", verdict.get("reason", ""), verdict.get("message", ""))
        if verdict is not None and verdict["type"] == "SuccessCriteriaMet":
            if true_condition(status, "SuccessCriteriaMet") is None:
                status.setdefault("conditions", []).append(verdict)
                needs_write = True
            verdict = new_condition("Complete", "True", verdict.get("reason", ""), verdict.get("message", ""))
        if needs_write:
            await self._write_status(key, status)
            needs_write = False
        for pod in releasing:
            await self._remove_finalizer(pod)
            with_finalizer.discard(pod["metadata"]["uid"])
        needs_write = _count_released(status, with_finalizer) or needs_write
        done = verdict is not None and not any(uncounted.values()) and terminating == 0
        if done:
            assert verdict is not None
            ensure_condition(status, verdict["type"], "True", verdict.get("reason", ""), verdict.get("message", ""))
            if verdict["type"] == "Complete":
                status["completionTime"] = true_condition(status, "Complete")["lastTransitionTime"]  # type: ignore[index]
            needs_write = True
        if needs_write:
            await self._write_status(key, status)
            if done and verdict is not None and verdict["type"] == "Complete":
                self._event(self.jobs[key], "Completed", "Job completed")
            elif done and verdict is not None:
                self._event(self.jobs[key], verdict.get("reason", "Failed"), verdict.get("message", ""), "Warning")


def _count_released(status: Obj, with_finalizer: set[str]) -> bool:
    """cleanUncountedPodsWithoutFinalizers: uncounted Pods whose finalizer is gone are counted."""
    uncounted = status["uncountedTerminatedPods"]
    changed = False
    for field, counter in (("succeeded", "succeeded"), ("failed", "failed")):
        waiting = uncounted.get(field) or []
        left = [uid for uid in waiting if uid in with_finalizer]
        if len(left) != len(waiting):
            status[counter] = int(status.get(counter) or 0) + len(waiting) - len(left)
            uncounted[field] = left
            changed = True
    return changed
