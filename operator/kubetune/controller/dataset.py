"""The Dataset reconciler: validate each generation of a Dataset once, with a CPU Job.

The same shape as the TuningJob reconciler: a pass reads the Dataset, its validation Job and
Pods from the cache, creates the validator ConfigMap and Job for the current generation if
that generation has no finished validation yet (AlreadyExists is success), derives the status
with the pure `kubetune.status` (the validator's report is its termination message), and
patches status and records Events only for what changed. A spec change is a new generation,
seen against `status.observedGeneration`, and gets a Job of its own.

When a validation finishes, the TuningJobs waiting for the Dataset are queued at once: Ready
lets them start, Invalid or Failed shows on them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from kubetune.api import Dataset, DatasetPhase, DatasetStatus
from kubetune.api.errors import explain_validation_error
from kubetune.builders import (
    LABEL_DATASET,
    VALIDATOR_CONTAINER,
    build_validation_job,
    build_validator_config_map,
    owner_reference,
    resolve_validator_config,
    validation_job_name,
)
from kubetune.controller.objects import DATASET, JOB, POD, Obj, ObjectKey
from kubetune.controller.reconciler import ControllerContext, create_children, job_is_over, pods_now, publish
from kubetune.kube import DATASETS
from kubetune.status import FINISHED_PHASES, dataset_events, derive_dataset_status
from kubetune.status.observe import observe_job, observe_pods

logger = logging.getLogger(__name__)


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


def _generation(body: Mapping[str, Any]) -> int:
    return int((body.get("metadata") or {}).get("generation") or 1)


class DatasetReconciler:
    kind = DATASET

    def __init__(self, ctx: ControllerContext, dependents: Callable[[str, str], list[ObjectKey]]) -> None:
        """`dependents(namespace, name)`: the objects to queue when this Dataset's validation finishes."""
        self.ctx = ctx
        self.dependents = dependents

    def needs_children(self, body: Mapping[str, Any]) -> bool:
        return (body.get("status") or {}).get("observedGeneration") != _generation(body)

    def forget(self, namespace: str, name: str) -> None:
        self.ctx.metrics.forget_dataset(namespace, name)

    def reconcile(self, namespace: str, name: str) -> float | None:
        body = self.ctx.cache.get(DATASET, namespace, name)
        if body is None:
            self.forget(namespace, name)
            return None
        if (body.get("metadata") or {}).get("deletionTimestamp"):
            return None
        with self.ctx.metrics.reconcile_duration.labels(DATASET).time():
            finished_now = self._reconcile(body)
        if finished_now:
            for key in self.dependents(namespace, name):
                self.ctx.queue.add(key, urgent=True)
        # A validation Job without a Pod brings no events: a pass must come to read why (podrefusals.py).
        return self.ctx.pod_refusals.next_read(namespace, validation_job_name(name, _generation(body)))

    def _reconcile(self, body: Obj) -> bool:
        """One pass; whether the validation finished in it."""
        ctx = self.ctx
        meta = body["metadata"]
        namespace, name = meta.get("namespace") or "default", meta["name"]
        generation = _generation(body)
        previous = parse_status(body.get("status"))
        ds, spec_error = parse_dataset(body)
        job_name = validation_job_name(name, generation)
        done = (previous is not None and previous.observed_generation == generation
                and previous.phase in FINISHED_PHASES)

        job = ctx.cache.get(JOB, namespace, job_name)
        if ds is not None and job is None and not done:
            config = resolve_validator_config(ds, ctx.settings)
            owner = owner_reference(body)
            job = create_children(ctx, build_validator_config_map(ds, config, owner),
                                  build_validation_job(ds, config, ctx.settings, owner))
            logger.info("%s/%s: validation Job %s", namespace, name, job_name)

        pods = ctx.cache.owned((JOB, namespace, job_name), POD) if job is not None else []
        now = datetime.now(UTC).replace(microsecond=0)
        job_obs = observe_job(job) if done else ctx.pod_refusals.observe(namespace, observe_job(job), bool(pods))
        pod_obs = observe_pods(pods, VALIDATOR_CONTAINER)
        if job_is_over(job_obs) and not done and (pod_obs is None or pod_obs.terminated is None):
            pod_obs = observe_pods(pods_now(ctx, namespace, job_name, LABEL_DATASET, name), VALIDATOR_CONTAINER)
        current = derive_dataset_status(
            previous,
            generation=generation,
            source=_describe_source(body, ds),
            job_name=job_name,
            job=job_obs,
            pod=pod_obs,
            spec_error=spec_error,
            now=now,
        )
        before = previous.to_wire() if previous is not None else {}
        after = current.to_wire()
        publish(ctx, DATASET, DATASETS, body, before, after, dataset_events(previous, current))
        finished_now = current.phase in FINISHED_PHASES and (previous is None or before != after)
        if finished_now and current.phase is not DatasetPhase.READY:
            ctx.metrics.count_failure(DATASET, current.reason or (current.phase.value if current.phase else "Unknown"))
        ctx.metrics.observe_dataset(namespace, name, current.phase.value if current.phase else None)
        return finished_now
