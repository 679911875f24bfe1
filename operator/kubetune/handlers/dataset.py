"""Dataset handlers: validate each generation of a Dataset once, with a CPU Job.

On create, resume or spec change the operator creates the validator ConfigMap and Job for
the Dataset's current generation (AlreadyExists is success); changes of Jobs and Pods
labelled `kubetune.io/dataset` bring the validator's report (its termination message) into
status via the pure `derive_dataset_status`. When a Dataset finishes validation, the
TuningJobs waiting for it are reconciled right away.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import kopf
from pydantic import ValidationError

from kubetune.api import Dataset, DatasetPhase, DatasetStatus
from kubetune.api.common import GROUP, VERSION
from kubetune.api.errors import explain_validation_error
from kubetune.builders import (
    LABEL_DATASET,
    VALIDATOR_CONTAINER,
    build_validation_job,
    build_validator_config_map,
    label_value,
    owner_reference,
    resolve_validator_config,
    validation_job_name,
)
from kubetune.dataset_status import FINISHED_PHASES, derive_dataset_status
from kubetune.handlers import OperatorContext
from kubetune.handlers.tuningjob import nudge_waiting
from kubetune.kube import DATASETS, Obj, merge_patch, pods_of_job, post_event
from kubetune.observe import observe_job, observe_pods
from kubetune.status import dataset_events

KIND: Final = "Dataset"


def parse_dataset(body: Mapping[str, Any]) -> tuple[Dataset | None, str | None]:
    try:
        return Dataset.model_validate({**body, "status": None}), None
    except ValidationError as exc:
        return None, "; ".join(explain_validation_error(exc, Dataset))


def parse_status(raw: Any) -> DatasetStatus | None:
    if not raw:
        return None
    try:
        return DatasetStatus.model_validate(raw)
    except ValidationError:
        return None


def _describe_source(body: Mapping[str, Any], ds: Dataset | None) -> str:
    if ds is not None:
        return ds.spec.source.describe()
    source = (body.get("spec") or {}).get("source") or {}
    return ", ".join(sorted(source)) or "(no source)"


def reconcile(ctx: OperatorContext, namespace: str, name: str, logger: kopf.Logger) -> DatasetStatus | None:
    """Bring the Dataset's validation and status up to date; the status it now has (None: gone)."""
    with ctx.locks.hold(KIND, namespace, name), ctx.metrics.reconcile_duration.labels(KIND).time():
        body = ctx.kube.get_dataset(namespace, name)
        if body is None or body.get("metadata", {}).get("deletionTimestamp"):
            return None
        current, finished_now = _reconcile(ctx, body, logger)
    if finished_now:
        # Ready lets waiting runs start; Invalid or Failed shows on them at once.
        # Outside the Dataset's lock: the TuningJobs take their own locks and read this Dataset.
        nudge_waiting(ctx, namespace, name, logger)
    return current


def _reconcile(ctx: OperatorContext, body: Obj, logger: kopf.Logger) -> tuple[DatasetStatus, bool]:
    meta = body["metadata"]
    namespace, name = meta.get("namespace", "default"), meta["name"]
    generation = int(meta.get("generation") or 1)
    previous = parse_status(body.get("status"))
    ds, spec_error = parse_dataset(body)
    job_name = validation_job_name(name, generation)
    done = (previous is not None and previous.observed_generation == generation
            and previous.phase in FINISHED_PHASES)

    job = ctx.kube.get_job(namespace, job_name)
    if ds is not None and job is None and not done:
        config = resolve_validator_config(ds, ctx.settings)
        owner = owner_reference(body)
        ctx.kube.create(build_validator_config_map(ds, config, owner))
        if ctx.kube.create(build_validation_job(ds, config, ctx.settings, owner)):
            logger.info("created validation Job %s", job_name)
        job = ctx.kube.get_job(namespace, job_name)

    pods = []
    if job is not None:
        pods = pods_of_job(ctx.kube.list_pods(namespace, {LABEL_DATASET: label_value(name)}), job_name)
    current = derive_dataset_status(
        previous,
        generation=generation,
        source=_describe_source(body, ds),
        job_name=job_name,
        job=observe_job(job),
        pod=observe_pods(pods, VALIDATOR_CONTAINER),
        spec_error=spec_error,
        now=datetime.now(UTC).replace(microsecond=0),
    )
    before = previous.to_wire() if previous is not None else {}
    after = current.to_wire()
    if after != before:
        ctx.kube.patch_status(DATASETS, namespace, name, merge_patch(before, after))
    for event in dataset_events(previous, current):
        post_event(body, event.type, event.reason, event.message)
    finished_now = current.phase in FINISHED_PHASES and (previous is None or before != after)
    if finished_now and current.phase is not DatasetPhase.READY:
        ctx.metrics.count_failure(KIND, current.reason or (current.phase.value if current.phase else "Unknown"))
    ctx.metrics.observe_dataset(namespace, name, current.phase.value if current.phase else None)
    return current, finished_now


def register(registry: kopf.OperatorRegistry, ctx: OperatorContext) -> None:
    @kopf.on.create(GROUP, VERSION, DATASETS, registry=registry, id="dataset_create")
    def dataset_create(namespace: str | None, name: str, logger: kopf.Logger, **_: Any) -> None:
        reconcile(ctx, namespace or "default", name, logger)

    @kopf.on.resume(GROUP, VERSION, DATASETS, registry=registry, id="dataset_resume")
    def dataset_resume(namespace: str | None, name: str, logger: kopf.Logger, **_: Any) -> None:
        reconcile(ctx, namespace or "default", name, logger)

    @kopf.on.update(GROUP, VERSION, DATASETS, field="spec", registry=registry, id="dataset_update")
    def dataset_update(namespace: str | None, name: str, logger: kopf.Logger, **_: Any) -> None:
        reconcile(ctx, namespace or "default", name, logger)

    @kopf.on.event(GROUP, VERSION, DATASETS, registry=registry, id="dataset_gone")
    def dataset_gone(type: str, namespace: str | None, name: str, **_: Any) -> None:
        if type == "DELETED":
            ctx.metrics.forget_dataset(namespace or "default", name)
            ctx.locks.forget(KIND, namespace or "default", name)

    @kopf.on.event("batch", "v1", "jobs", labels={LABEL_DATASET: kopf.PRESENT},
                   registry=registry, id="dataset_job_event")
    @kopf.on.event("", "v1", "pods", labels={LABEL_DATASET: kopf.PRESENT},
                   registry=registry, id="dataset_pod_event")
    def dataset_job_event(body: kopf.Body, namespace: str | None, logger: kopf.Logger, **_: Any) -> None:
        owner = ctx.kube.owner_name(body, KIND)
        if owner is not None:
            reconcile(ctx, namespace or "default", owner, logger)
