"""TuningJob handlers: one idempotent `reconcile` that every trigger calls.

Triggers: every watch event of a TuningJob (the listing at operator start included), changes
of the Jobs and Pods labelled `kubetune.io/tuningjob`, and a poll every refresh interval for
what sends no event: a trainer's progress (it lives in the Pod log), a run waiting for a
Dataset, and a pass that failed on an API error (its retry). Each pass reads the TuningJob,
its Datasets, Job, Pods and log tail afresh, creates the ConfigMap and Job if the run may
start (AlreadyExists is success), derives the status with the pure `kubetune.status`, and
patches status and posts Events only for what changed. A per-object lock keeps concurrent
triggers from deriving twice.

Level-triggered on plain watch events rather than kopf's create/update handlers, because a
burst of TuningJobs is the common case and kopf's change tracking costs every object an
annotation patch, its echo and deep copies per event (docs/benchmarks.md, control plane).
What kopf's tracking gave is kept: spec changes are seen
by `metadata.generation` against the status's `observedGeneration` (in `derive_status`), a
failed pass is retried by the poller, and nothing is ever written for kopf, so there is no
finalizer and no annotation. The echoes of the operator's own writes (its status patch, its
Job create) carry a resourceVersion it has already seen and are dropped before any thread
is woken.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import kopf
from pydantic import ValidationError

from kubetune.api import Dataset, DatasetStatus, TuningJob, TuningJobPhase, TuningJobStatus
from kubetune.api.common import GROUP, VERSION, ObjectMeta
from kubetune.api.errors import explain_validation_error
from kubetune.api.progress import LogSummary, summarize
from kubetune.builders import (
    LABEL_TUNINGJOB,
    TRAINER_CONTAINER,
    ResolveError,
    build_rendezvous_service,
    build_trainer_config_map,
    build_training_job,
    label_value,
    owner_reference,
    resolve_trainer_config,
    training_job_name,
)
from kubetune.conditions import Reason
from kubetune.handlers import OperatorContext
from kubetune.kube import TUNINGJOBS, Obj, merge_patch, pods_of_job, post_event
from kubetune.observe import observe_job, observe_pods
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

KIND: Final = "TuningJob"
# Lines read from the trainer log per refresh: enough to hold a progress line between many
# plain ones, small enough to stay cheap; and only the last hour of it.
LOG_READ_LINES: Final = 400
LOG_SINCE_SECONDS: Final = 3600
# The phases polled every refresh interval: the trainer writes progress to its log (Running,
# Publishing), or a Dataset may turn up by a way that sends this run no nudge (WaitingForData).
POLLED_PHASES: Final = frozenset({TuningJobPhase.RUNNING, TuningJobPhase.PUBLISHING, TuningJobPhase.WAITING_FOR_DATA})

poll_logger = logging.getLogger(__name__)


class _StaleBody(Exception):
    """The body kopf handed over turned out older than the cluster (a Job already exists)."""


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def parse_tuningjob(body: Mapping[str, Any]) -> tuple[TuningJob | None, str | None]:
    """The TuningJob model, or the reason it is invalid (field path: what is wrong: what to do)."""
    try:
        return TuningJob.model_validate({**body, "status": None}), None
    except ValidationError as exc:
        return None, "; ".join(explain_validation_error(exc, TuningJob))


def parse_status(raw: Any) -> TuningJobStatus | None:
    """The status as last written; a status this operator cannot read counts as none."""
    if not raw:
        return None
    try:
        return TuningJobStatus.model_validate(raw)
    except ValidationError:
        return None


def _datasets(ctx: OperatorContext, namespace: str, names: list[str]) -> dict[str, Dataset]:
    found: dict[str, Dataset] = {}
    for name in names:
        raw = ctx.kube.get_dataset(namespace, name)
        if raw is None:
            continue
        try:
            found[name] = Dataset.model_validate(raw)
        except ValidationError:
            # A Dataset whose spec does not validate says so in its own status (Failed, set by the
            # Dataset controller); its phase is all a TuningJob needs to wait or fail.
            fields: dict[str, Any] = {"metadata": ObjectMeta.model_validate(raw.get("metadata") or {"name": name}),
                                      "spec": None, "status": _dataset_status(raw.get("status"))}
            found[name] = Dataset.model_construct(**fields)
    return found


def _dataset_status(raw: Any) -> DatasetStatus | None:
    try:
        return DatasetStatus.model_validate(raw) if raw else None
    except ValidationError:
        return None


def _create_job(ctx: OperatorContext, tj: TuningJob, body: Obj, datasets: Mapping[str, Dataset],
                logger: kopf.Logger, *, body_is_fresh: bool) -> tuple[Obj, bool]:
    """The run's Job, created now if it did not exist; and whether it was created now."""
    config = resolve_trainer_config(tj, datasets).model_copy(
        update={"allow_private_urls": ctx.settings.allow_private_urls})
    owner = owner_reference(body)
    config_map = build_trainer_config_map(tj, config, owner)
    job = build_training_job(tj, config, ctx.settings, owner)
    # ConfigMap first: a Job whose config is missing would start a Pod that cannot mount it.
    ctx.kube.create(config_map)
    if tj.spec.resources.nodes > 1:
        # Before the Job too: Pod 0's name must resolve when the other nodes look for the rendezvous.
        ctx.kube.create(build_rendezvous_service(tj, owner))
    key = (tj.metadata.namespace, tj.metadata.name)
    ctx.creating_jobs.add(key)
    created = ctx.kube.create(job)  # `reconcile` forgets `creating_jobs` when the pass ends
    if created is not None:
        logger.info("created Job %s", job["metadata"]["name"])
        return created, True
    if not body_is_fresh:
        # Someone (an earlier pass, an earlier operator) got further than this body shows.
        raise _StaleBody()
    return ctx.kube.get_job(tj.metadata.namespace, job["metadata"]["name"]) or job, False


def _sync_suspend(ctx: OperatorContext, tj: TuningJob, job: Obj, logger: kopf.Logger) -> Obj:
    """Carry spec.suspend to the Job. A Kueue-queued Job is resumed by Kueue, never by us."""
    wanted = tj.spec.suspend
    current = bool((job.get("spec") or {}).get("suspend"))
    if wanted == current or (not wanted and tj.spec.queue_name):
        return job
    ctx.kube.patch_job_suspend(tj.metadata.namespace, job["metadata"]["name"], wanted)
    logger.info("%s Job %s", "suspended" if wanted else "resumed", job["metadata"]["name"])
    return {**job, "spec": {**job.get("spec", {}), "suspend": wanted}}


def _read_log(ctx: OperatorContext, namespace: str, pod_name: str) -> LogSummary | None:
    lines = ctx.kube.read_log_tail(namespace, pod_name, container=TRAINER_CONTAINER,
                                   tail_lines=LOG_READ_LINES, since_seconds=LOG_SINCE_SECONDS)
    return summarize(lines) if lines is not None else None


def reconcile(ctx: OperatorContext, namespace: str, name: str, logger: kopf.Logger,
              known_body: Mapping[str, Any] | None = None) -> TuningJobStatus | None:
    """Bring the TuningJob's children and status up to date; the status it now has (None: gone).

    `known_body`: the TuningJob as kopf last saw it, used instead of a fresh read when this
    process has never reconciled the object (so nothing it wrote can be missing from it).
    """
    with ctx.locks.hold(KIND, namespace, name), \
            ctx.metrics.reconcile_duration.labels(KIND).time():
        try:
            seen = (namespace, name) in ctx.seen_jobs
            if known_body is not None and not seen and not (known_body.get("metadata") or {}).get("deletionTimestamp"):
                try:
                    return _reconcile(ctx, dict(known_body), logger, body_is_fresh=False)
                except _StaleBody:
                    pass
            body = ctx.kube.get_tuningjob(namespace, name)
            if body is None or body.get("metadata", {}).get("deletionTimestamp"):
                _forget(ctx, namespace, name)
                return None
            return _reconcile(ctx, body, logger, body_is_fresh=True)
        finally:
            # By now the pass recorded the Job it created (seen_jobs), or failed before it could.
            ctx.creating_jobs.discard((namespace, name))


def _forget(ctx: OperatorContext, namespace: str, name: str) -> None:
    ctx.poller.forget(namespace, name)
    ctx.seen_jobs.pop((namespace, name), None)
    ctx.creating_jobs.discard((namespace, name))
    ctx.seen_tuningjobs.pop((namespace, name), None)


def _reconcile(ctx: OperatorContext, body: Obj, logger: kopf.Logger, *, body_is_fresh: bool) -> TuningJobStatus:
    meta = body["metadata"]
    namespace, name = meta.get("namespace", "default"), meta["name"]
    previous = parse_status(body.get("status"))
    tj, spec_error = parse_tuningjob(body)
    finished = previous is not None and previous.phase in TERMINAL_PHASES

    datasets: dict[str, Dataset] = {}
    datasets_obs = observe_datasets([], {})
    if tj is not None:
        names = referenced_datasets(tj.spec)
        datasets = _datasets(ctx, namespace, names)
        datasets_obs = observe_datasets(names, datasets)

    job: Obj | None = None
    created_now = False
    if tj is not None and _may_start(ctx, previous, meta.get("generation"), datasets_obs):
        # No Job recorded: create straight away; one that exists anyway (AlreadyExists) is read.
        try:
            job, created_now = _create_job(ctx, tj, body, datasets, logger, body_is_fresh=body_is_fresh)
        except ResolveError as exc:
            spec_error = f"{exc.reason}: {exc.message}"
            job = ctx.kube.get_job(namespace, training_job_name(name))
    else:
        job = ctx.kube.get_job(namespace, training_job_name(name))
    if tj is not None and job is not None and not finished:
        job = _sync_suspend(ctx, tj, job, logger)

    job_obs = observe_job(job)
    # A Job created a moment ago has no Pods yet; their arrival is a watch event of its own.
    pods = ctx.kube.list_pods(namespace, {LABEL_TUNINGJOB: label_value(name)}) \
        if job is not None and not created_now else []
    pod_obs = observe_pods(pods_of_job(pods, job_obs.name) if job_obs else [], TRAINER_CONTAINER)
    log = None
    if pod_obs is not None and not finished and (pod_obs.running or pod_obs.terminated is not None):
        log = _read_log(ctx, namespace, pod_obs.name)

    # An edit that does not even validate is a change too, once a Job runs the old spec.
    changed = spec_changed_after_start(job_obs, tj.spec) if tj is not None else job_obs is not None
    world, batch = run_size(tj.spec) if tj is not None else (None, None)
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
    )
    current = derive_status(previous, observation, now=_now(), log_tail_lines=ctx.settings.log_tail_lines)
    _publish(ctx, body, previous, current)
    ctx.seen_jobs[(namespace, name)] = str((job.get("metadata") or {}).get("resourceVersion")) \
        if job is not None else None
    if current.phase in POLLED_PHASES:
        ctx.poller.follow(namespace, name, ctx.settings.status_refresh_seconds)
    else:
        ctx.poller.forget(namespace, name)
    return current


def _may_start(ctx: OperatorContext, previous: TuningJobStatus | None, generation: int | None,
               datasets: DatasetsObservation) -> bool:
    """Whether the status rules let a Job be created now: asked of `derive_status` itself (no Job
    yet, valid spec, data ready, and no finished run or earlier Job), so the rule lives in one place."""
    if previous is not None and previous.job_name is not None:
        return False  # a Job existed: if it is gone, that is reported, never silently re-run
    gate = derive_status(previous, RunObservation(generation=generation, datasets=datasets),
                         now=_now(), log_tail_lines=ctx.settings.log_tail_lines)
    return gate.phase is TuningJobPhase.PENDING


def _publish(ctx: OperatorContext, body: Obj, previous: TuningJobStatus | None, current: TuningJobStatus) -> None:
    meta = body["metadata"]
    namespace, name = meta.get("namespace", "default"), meta["name"]
    before = previous.to_wire() if previous is not None else {}
    after = current.to_wire()
    if after != before:
        patched = ctx.kube.patch_status(TUNINGJOBS, namespace, name, merge_patch(before, after))
        ctx.seen_tuningjobs[(namespace, name)] = str((patched.get("metadata") or {}).get("resourceVersion"))
    for event in status_events(previous, current):
        post_event(body, event.type, event.reason, event.message)
    if current.phase is TuningJobPhase.FAILED and (previous is None or previous.phase is not TuningJobPhase.FAILED):
        ctx.metrics.count_failure(KIND, current.error.reason if current.error is not None else "Unknown")
    ctx.metrics.observe_tuningjob(namespace, name, current.phase.value if current.phase else None, current.progress)


def _finished(status: Mapping[str, Any] | None) -> bool:
    return (status or {}).get("phase") in {p.value for p in TERMINAL_PHASES}


def _job_seen(ctx: OperatorContext, namespace: str, owner: str, event_type: str | None, job: Mapping[str, Any]) -> bool:
    """Whether this Job event shows the very Job version the last pass of its TuningJob saw, or
    is the ADDED event of a Job that pass is creating: the echo of our own create, nothing in
    it is news. A deletion always is."""
    if event_type == "ADDED" and (namespace, owner) in ctx.creating_jobs:
        return True
    if event_type == "DELETED" or (namespace, owner) not in ctx.seen_jobs:
        return False
    version = (job.get("metadata") or {}).get("resourceVersion")
    return version is not None and ctx.seen_jobs.get((namespace, owner)) == str(version)


def _tuningjob_seen(ctx: OperatorContext, namespace: str, name: str, body: Mapping[str, Any]) -> bool:
    """Whether this TuningJob version is one this process wrote itself (the echo of its status patch)."""
    version = (body.get("metadata") or {}).get("resourceVersion")
    return version is not None and ctx.seen_tuningjobs.get((namespace, name)) == str(version)


def register(registry: kopf.OperatorRegistry, ctx: OperatorContext) -> None:
    retry_seconds = max(1, ctx.settings.status_refresh_seconds)

    def poll(namespace: str, name: str) -> None:
        reconcile(ctx, namespace, name, poll_logger)

    def reconcile_or_retry(namespace: str, name: str, logger: kopf.Logger,
                           known_body: Mapping[str, Any] | None = None) -> None:
        try:
            reconcile(ctx, namespace, name, logger, known_body=known_body)
        except Exception:
            # An API error mid-pass: the poller tries again; the next pass redoes what is missing.
            ctx.poller.follow(namespace, name, retry_seconds)
            raise

    @kopf.on.startup(registry=registry, id="tuningjob_poller_start")
    def tuningjob_poller_start(**_: Any) -> None:
        ctx.poller.start(poll, ctx.settings.status_refresh_seconds)

    @kopf.on.cleanup(registry=registry, id="tuningjob_poller_stop")
    def tuningjob_poller_stop(**_: Any) -> None:
        ctx.poller.stop()

    def tuningjob_is_news(type: str | None, body: kopf.Body, status: kopf.Status, namespace: str | None,
                          name: str, **_: Any) -> bool:
        if type == "DELETED":
            return True
        if type is None and _finished(status):
            return False  # the listing at operator start: a finished run has nothing left to do
        return not _tuningjob_seen(ctx, namespace or "default", name, body)

    @kopf.on.event(GROUP, VERSION, TUNINGJOBS, registry=registry, id="tuningjob_event", when=tuningjob_is_news)
    def tuningjob_event(type: str | None, body: kopf.Body, namespace: str | None, name: str,
                        logger: kopf.Logger, **_: Any) -> None:
        namespace = namespace or "default"
        if type == "DELETED":
            ctx.metrics.forget_tuningjob(namespace, name)
            ctx.locks.forget(KIND, namespace, name)
            _forget(ctx, namespace, name)
            return
        reconcile_or_retry(namespace, name, logger, known_body=body)

    def job_is_news(type: str | None, body: kopf.Body, namespace: str | None, **_: Any) -> bool:
        owner = ctx.kube.owner_name(body, KIND)
        return owner is not None and not _job_seen(ctx, namespace or "default", owner, type, body)

    @kopf.on.event("batch", "v1", "jobs", labels={LABEL_TUNINGJOB: kopf.PRESENT},
                   registry=registry, id="tuningjob_job_event", when=job_is_news)
    def tuningjob_job_event(body: kopf.Body, namespace: str | None, logger: kopf.Logger, **_: Any) -> None:
        owner = ctx.kube.owner_name(body, KIND)
        if owner is not None:
            reconcile_or_retry(namespace or "default", owner, logger)

    @kopf.on.event("", "v1", "pods", labels={LABEL_TUNINGJOB: kopf.PRESENT},
                   registry=registry, id="tuningjob_pod_event")
    def tuningjob_pod_event(body: kopf.Body, namespace: str | None, logger: kopf.Logger, **_: Any) -> None:
        owner = ctx.kube.owner_name(body, KIND)
        if owner is not None:
            reconcile_or_retry(namespace or "default", owner, logger)


def nudge_waiting(ctx: OperatorContext, namespace: str, dataset: str, logger: kopf.Logger) -> None:
    """Reconcile the TuningJobs waiting for `dataset` now, rather than at their next retry."""
    for body in ctx.kube.list_tuningjobs(namespace):
        status = body.get("status") or {}
        phase = status.get("phase")
        failed_on_data = (status.get("error") or {}).get("reason") == Reason.DATASET_INVALID
        if phase not in (None, TuningJobPhase.PENDING.value, TuningJobPhase.WAITING_FOR_DATA.value) \
                and not failed_on_data:
            continue
        tj, _ = parse_tuningjob(body)
        if tj is not None and dataset in referenced_datasets(tj.spec):
            reconcile(ctx, namespace, tj.metadata.name, logger)
