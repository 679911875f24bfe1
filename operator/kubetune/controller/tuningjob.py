"""The TuningJob reconciler: one run's Datasets, ConfigMap, Job and Pod -> its status and Events.

Level-triggered: a pass reads the TuningJob, its Datasets, Job and Pods from the cache (only
the trainer's log tail is read from the API server, while the trainer runs), creates the
ConfigMap and Job if the run may start (AlreadyExists is success), derives the status with the
pure `kubetune.status`, and patches status and records Events only for what changed. With
spec.guardrails.preflight (the default) the run's first children are the preflight's ConfigMap
and CPU Job; the training Job follows only once its report passed, pinned to the commits it
resolved, and a failed report ends the run with no training Job at all. Spec
changes are seen by `metadata.generation` against `status.observedGeneration`. Nothing is
ever written for kopf: no finalizer, no annotation.

A run whose trainer is running (Running, Publishing) asks for another pass every refresh
interval, since its progress lives in its Pod's log, which sends no event; so does a run
waiting for data (a Dataset may turn up by a way that sends it no nudge).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from kubetune.api import Dataset, TuningJob, TuningJobPhase, TuningJobStatus
from kubetune.api.guardrails import PinnedRevisions
from kubetune.api.progress import LogSummary, summarize
from kubetune.builders import (
    LABEL_TUNINGJOB,
    TRAINER_CONTAINER,
    ResolveError,
    build_rendezvous_service,
    build_trainer_config_map,
    build_training_job,
    build_work_volume_claim,
    owner_reference,
    resolve_trainer_config,
    training_job_name,
)
from kubetune.builders.names import preflight_job_name
from kubetune.builders.preflight import (
    PREFLIGHT_CONTAINER,
    build_preflight_config_map,
    build_preflight_job,
    pin_revisions,
    with_gpu_memory,
)
from kubetune.controller.budget import RateBudget
from kubetune.controller.objects import DATASET, JOB, POD, TUNINGJOB, Obj, ObjectKey, version_of
from kubetune.controller.parsing import RecentlyParsed, parse_dataset, parse_status
from kubetune.controller.reconciler import ControllerContext, create_children, job_is_over, pods_now, publish
from kubetune.controller.workvolume import ensure_work_claim
from kubetune.kube import TUNINGJOBS
from kubetune.status import (
    TERMINAL_PHASES,
    DatasetsObservation,
    RunObservation,
    derive_status,
    observe_datasets,
    referenced_datasets,
    run_size,
    spec_changed_after_start,
    status_events,
)
from kubetune.status.conditions import Reason
from kubetune.status.guardrails import PreflightObservation, PreflightStage, pinned_datasets, preflight_verdict
from kubetune.status.observe import failure_elsewhere, observe_job, observe_pods, pod_times

logger = logging.getLogger(__name__)

# Lines read from the trainer log per refresh: enough to hold a progress line between many
# plain ones, small enough to stay cheap; and only the last hour of it.
LOG_READ_LINES: Final = 400
LOG_SINCE_SECONDS: Final = 3600
# A refresh pass comes when the interval is up, give or take the timer: read then.
LOG_REREAD_SHARE: Final = 0.9
# Parsed TuningJob versions kept: enough for the runs starting in a burst; a thousand parsed
# models would hold ~14 MiB for the rare passes of long-running runs.
PARSED_KEPT: Final = 256
# The phases refreshed every interval without an event (see the module docstring).
POLLED_PHASES: Final = frozenset({TuningJobPhase.RUNNING, TuningJobPhase.PUBLISHING, TuningJobPhase.WAITING_FOR_DATA})
# The phases of a run that has no Job yet and may get one once its data is there.
_BEFORE_JOB: Final = frozenset({None, TuningJobPhase.PENDING.value, TuningJobPhase.WAITING_FOR_DATA.value})


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def waiting_for_dataset(body: Mapping[str, Any], dataset: str) -> bool:
    """Whether this TuningJob (a raw body) refers to `dataset` and has no Job yet because of its data:
    it waits for it, or failed on it being invalid (mended data is still this run)."""
    status = body.get("status") or {}
    failed_on_data = (status.get("error") or {}).get("reason") == Reason.DATASET_INVALID
    if status.get("phase") not in _BEFORE_JOB and not failed_on_data:
        return False
    datasets = (body.get("spec") or {}).get("datasets") or {}
    entries = [*(datasets.get("train") or ()), *(datasets.get("validation") or ())]
    return any(isinstance(entry, Mapping) and entry.get("dataset") == dataset for entry in entries)


class TuningJobReconciler:
    kind = TUNINGJOB

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        # Per run whose trainer runs: (Pod name, its resourceVersion, when) at the last log read.
        self._log_reads: dict[tuple[str, str], tuple[str, str | None, float]] = {}
        # Refresh reads share a budget, so that a thousand running runs do not read a thousand logs
        # every interval; a run whose refresh found the budget spent has a slot booked (when).
        rate = ctx.settings.log_reads_per_second
        self._log_budget = RateBudget(rate, burst=rate)
        self._log_slots: dict[tuple[str, str], float] = {}
        # Most passes of a starting run (its Pod's and Job's events) see the TuningJob version the
        # previous pass parsed; parsing and hashing the spec was a third of a pass.
        self._parsed = RecentlyParsed(PARSED_KEPT)

    def needs_children(self, body: Mapping[str, Any]) -> bool:
        status = body.get("status") or {}
        return not status.get("jobName") and status.get("phase") not in {p.value for p in TERMINAL_PHASES}

    def forget(self, namespace: str, name: str) -> None:
        self.ctx.metrics.forget_tuningjob(namespace, name)
        self._log_reads.pop((namespace, name), None)
        self._log_slots.pop((namespace, name), None)
        self._parsed.forget(namespace, name)
        for job in (training_job_name(name), preflight_job_name(name)):
            self.ctx.pod_refusals.forget(namespace, job)

    def reconcile(self, namespace: str, name: str) -> float | None:
        body = self.ctx.cache.get(TUNINGJOB, namespace, name)
        if body is None:
            self.forget(namespace, name)
            return None
        if (body.get("metadata") or {}).get("deletionTimestamp"):
            return None
        with self.ctx.metrics.reconcile_duration.labels(TUNINGJOB).time():
            status = self._reconcile(body)
        if status is not None and status.phase in (TuningJobPhase.PENDING, TuningJobPhase.STARTING):
            # A Job without a Pod brings no events: a pass must come to read why (controller/podrefusals.py).
            due = [self.ctx.pod_refusals.next_read(namespace, job) for job in (training_job_name(name),
                                                                                 preflight_job_name(name))]
            return min((seconds for seconds in due if seconds is not None), default=None)
        if status is None or status.phase not in POLLED_PHASES:
            return None
        slot = self._log_slots.get((namespace, name))
        # A booked log read is what the next timed pass is for: it comes then, not before.
        return max(0.01, slot - time.monotonic()) if slot is not None \
            else float(self.ctx.settings.status_refresh_seconds)

    def _reconcile(self, body: Obj) -> TuningJobStatus | None:
        """One pass; the status the run now has (None: its publication was left to a later pass)."""
        ctx = self.ctx
        meta = body["metadata"]
        namespace, name = meta.get("namespace") or "default", meta["name"]
        previous = parse_status(body.get("status"))
        parsed = self._parsed.get(namespace, name, body)
        tj, spec_error = parsed.tuningjob, parsed.error
        finished = previous is not None and previous.phase in TERMINAL_PHASES

        datasets: dict[str, Dataset] = {}
        datasets_obs = observe_datasets([], {})
        if tj is not None:
            names = referenced_datasets(tj.spec)
            for dataset_name in names:
                raw = ctx.cache.get(DATASET, namespace, dataset_name)
                if raw is not None:
                    datasets[dataset_name] = parse_dataset(raw, dataset_name)
            datasets_obs = observe_datasets(names, datasets)

        job = ctx.cache.get(JOB, namespace, training_job_name(name))
        # Only a run without its training Job still waits on the preflight; after, status keeps its verdict.
        preflight = self._observe_preflight(namespace, name, finished) \
            if tj is not None and tj.spec.guardrails.preflight and job is None else None
        if tj is not None and job is None and self._may_start(previous, meta.get("generation"), datasets_obs,
                                                              preflight):
            verdict = preflight_verdict(preflight) if preflight is not None else None
            try:
                if verdict is None or verdict.stage is PreflightStage.PASSED:
                    report = verdict.report if verdict is not None else None
                    pins = PinnedRevisions(base_model_revision=report.base_model_revision,
                                           datasets=report.datasets) if report is not None else None
                    job = self._create_job(tj, body, datasets, pins)
                    created = True
                elif preflight is not None and preflight.job is None:
                    preflight = PreflightObservation(job=observe_job(self._create_preflight(tj, body, datasets)))
                    created = True
                else:
                    created = False  # the preflight runs: its Pod's events bring the next pass
            except ResolveError as exc:
                spec_error = f"{exc.reason}: {exc.message}"
            else:
                if created and ctx.queue.urgent_waiting():
                    # Other new runs wait for their Jobs: theirs first, this one's status after
                    # (a pass of its own, from the cache, once no new run waits).
                    ctx.queue.add((TUNINGJOB, namespace, name))
                    return None
        if tj is not None and job is not None and not finished:
            job = self._sync_suspend(tj, job)

        job_obs = observe_job(job)
        pods = ctx.cache.owned((JOB, namespace, job_obs.name), POD) if job_obs is not None else []
        job_obs = ctx.pod_refusals.observe(namespace, job_obs, bool(pods))
        pod_obs = observe_pods(pods, TRAINER_CONTAINER)
        pod_pending = pod_obs is None or pod_obs.terminated is None
        if job_obs is not None and job_is_over(job_obs) and not finished and pod_pending:
            pods = pods_now(ctx, namespace, job_obs.name, LABEL_TUNINGJOB, name)
            pod_obs = observe_pods(pods, TRAINER_CONTAINER)
        log = None
        if pod_obs is not None and not finished and (pod_obs.running or pod_obs.terminated is not None):
            log = self._read_log_if_due(namespace, name, pod_obs.name, pods)

        # An edit that does not even validate is a change too, once a Job runs the old spec.
        changed = spec_changed_after_start(job_obs, tj.spec, parsed.spec_hash) if tj is not None \
            else job_obs is not None
        world, batch = run_size(tj.spec) if tj is not None else (None, None)
        report = preflight.report if preflight is not None else None
        observation = RunObservation(
            generation=meta.get("generation"),
            spec_error=spec_error,
            datasets=datasets_obs,
            job=job_obs,
            pod=pod_obs,
            log=log,
            spec_changed_after_start=changed,
            suspend_requested=tj is not None and tj.spec.suspend,
            world_size=world,
            effective_batch_size=batch,
            preflight=preflight,
            pinned_datasets=tuple(pinned_datasets(tj.spec, datasets, report)) if tj is not None else (),
            pod_times=pod_times(pods, TRAINER_CONTAINER),
            failure_elsewhere=failure_elsewhere(pods, TRAINER_CONTAINER)
            if pod_obs is not None and pod_obs.terminated is not None else None,
        )
        current = derive_status(previous, observation, now=_now(), log_tail_lines=ctx.settings.log_tail_lines)
        before = previous.to_wire() if previous is not None else {}
        publish(ctx, TUNINGJOB, TUNINGJOBS, body, before, current.to_wire(), status_events(previous, current))
        if current.phase is TuningJobPhase.FAILED and (previous is None or previous.phase is not TuningJobPhase.FAILED):
            ctx.metrics.count_failure(TUNINGJOB, current.error.reason if current.error is not None else "Unknown")
        ctx.metrics.observe_tuningjob(namespace, name, current.phase.value if current.phase else None,
                                      current.progress)
        ctx.metrics.observe_usage(namespace, name, current.usage)
        if current.phase in TERMINAL_PHASES:
            self._log_reads.pop((namespace, name), None)
            self._log_slots.pop((namespace, name), None)
            self._parsed.forget(namespace, name)
        return current

    def _may_start(self, previous: TuningJobStatus | None, generation: int | None,
                   datasets: DatasetsObservation, preflight: PreflightObservation | None) -> bool:
        """Whether the status rules let a Job (the preflight's, then the training one) be created now:
        asked of `derive_status` itself (no Job yet, valid spec, data ready, no failed preflight, and
        no finished run or earlier Job), so the rule lives in one place."""
        if previous is not None and previous.job_name is not None:
            return False  # a Job existed: if it is gone, that is reported, never silently re-run
        gate = derive_status(previous, RunObservation(generation=generation, datasets=datasets, preflight=preflight),
                             now=_now(), log_tail_lines=self.ctx.settings.log_tail_lines)
        return gate.phase is TuningJobPhase.PENDING

    def _observe_preflight(self, namespace: str, name: str, finished: bool) -> PreflightObservation:
        ctx = self.ctx
        job_obs = observe_job(ctx.cache.get(JOB, namespace, preflight_job_name(name)))
        if job_obs is None:
            return PreflightObservation()
        pods = ctx.cache.owned((JOB, namespace, job_obs.name), POD)
        job_obs = ctx.pod_refusals.observe(namespace, job_obs, bool(pods))
        assert job_obs is not None
        pod_obs = observe_pods(pods, PREFLIGHT_CONTAINER)
        if job_is_over(job_obs) and not finished and (pod_obs is None or pod_obs.terminated is None):
            pod_obs = observe_pods(pods_now(ctx, namespace, job_obs.name, LABEL_TUNINGJOB, name), PREFLIGHT_CONTAINER)
        return PreflightObservation(job=job_obs, pod=pod_obs)

    def _create_preflight(self, tj: TuningJob, body: Obj, datasets: Mapping[str, Dataset]) -> Obj:
        ctx = self.ctx
        config = with_gpu_memory(resolve_trainer_config(tj, datasets, ctx.settings).model_copy(
            update={"allow_private_urls": ctx.settings.allow_private_urls}), ctx.settings)
        owner = owner_reference(body)
        job = create_children(ctx, build_preflight_config_map(tj, config, owner),
                              build_preflight_job(tj, config, ctx.settings, owner))
        logger.info("%s/%s: preflight Job %s", tj.metadata.namespace, tj.metadata.name, job["metadata"]["name"])
        return job

    def _create_job(self, tj: TuningJob, body: Obj, datasets: Mapping[str, Dataset],
                    pins: PinnedRevisions | None) -> Obj:
        ctx = self.ctx
        config = pin_revisions(resolve_trainer_config(tj, datasets, ctx.settings).model_copy(
            update={"allow_private_urls": ctx.settings.allow_private_urls}), pins)
        owner = owner_reference(body)
        claim = build_work_volume_claim(tj, ctx.settings, owner)
        if claim is not None:
            # Before the Job: its Pod mounts the claim (a missing one would only leave it Pending).
            ensure_work_claim(ctx, tj, claim)
        if tj.spec.resources.nodes > 1:
            # Before the Job: Pod 0's name must resolve when the other nodes look for the rendezvous.
            ctx.kube.create(build_rendezvous_service(tj, owner))
        job = create_children(ctx, build_trainer_config_map(tj, config, owner),
                              build_training_job(tj, config, ctx.settings, owner))
        logger.info("%s/%s: Job %s", tj.metadata.namespace, tj.metadata.name, job["metadata"]["name"])
        return job

    def _sync_suspend(self, tj: TuningJob, job: Obj) -> Obj:
        """Carry spec.suspend to the Job. A Kueue-queued Job is resumed by Kueue, never by us."""
        wanted = tj.spec.suspend
        current = bool((job.get("spec") or {}).get("suspend"))
        if wanted == current or (not wanted and tj.spec.queue_name):
            return job
        patched = self.ctx.kube.patch_job_suspend(tj.metadata.namespace, job["metadata"]["name"], wanted)
        self.ctx.cache.write(JOB, patched)
        logger.info("%s Job %s", "suspended" if wanted else "resumed", job["metadata"]["name"])
        return patched

    def _read_log_if_due(self, namespace: str, name: str, pod_name: str, pods: list[Obj]) -> LogSummary | None:
        """The trainer's log tail, read when its Pod changed or a refresh interval has passed since
        the last read; None otherwise (the status keeps what the last read gave). A Job status
        update tells nothing about the log.

        A Pod change is read at once (the trainer started or ended); a refresh waits for its slot
        in the log-read budget (`log_reads_per_second`) when more runs are due than it allows.
        """
        key = (namespace, name)
        pod_version = next((version_of(p) for p in pods if p["metadata"]["name"] == pod_name), None)
        last = self._log_reads.get(key)
        now = time.monotonic()
        if last is None or last[:2] != (pod_name, pod_version):
            self._log_budget.take()
            self._log_slots.pop(key, None)
        elif now - last[2] < LOG_REREAD_SHARE * self.ctx.settings.status_refresh_seconds:
            return None
        elif (slot := self._log_slots.get(key)) is not None:
            if slot > now:
                return None
            del self._log_slots[key]
        elif (wait := self._log_budget.reserve()) > 0:
            self._log_slots[key] = now + wait
            return None
        lines = self.ctx.kube.read_log_tail(namespace, pod_name, container=TRAINER_CONTAINER,
                                            tail_lines=LOG_READ_LINES, since_seconds=LOG_SINCE_SECONDS)
        self._log_reads[(namespace, name)] = (pod_name, pod_version, now)
        return summarize(lines) if lines is not None else None

    def waiting_for(self, namespace: str, dataset: str) -> list[ObjectKey]:
        """The TuningJobs in the cache that wait for `dataset` (see `waiting_for_dataset`)."""
        return [(TUNINGJOB, namespace, body["metadata"]["name"])
                for body in self.ctx.cache.items(TUNINGJOB, namespace) if waiting_for_dataset(body, dataset)]
