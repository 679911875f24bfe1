"""The controller: informer cache + work queue + a pool of worker threads running the reconcilers.

Watch events (the informers call `observe` from their threads) only update the cache and
queue the key of the TuningJob or Dataset they concern; a fixed number of worker threads take
keys from the queue and run that kind's reconciler. So a burst of Pod and Job events costs a
dictionary update each, not a thread and a round of API reads each, and a new TuningJob waits
behind no refresh of an older one (it is queued as urgent).

At start, `prime` lists every watched kind into the cache (the informers' initial listings) before
any worker runs, and queues the TuningJobs and Datasets that are not settled; a run that
finished before the restart is not touched. `start` then starts each informer's watch from the
version its listing was taken at, and the workers.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, Final

from kubetune.api.common import API_VERSION
from kubetune.builders import LABEL_DATASET, LABEL_TUNINGJOB
from kubetune.builders.names import LABEL_MANAGED_BY, MANAGED_BY
from kubetune.controller.cache import InformerCache
from kubetune.controller.dataset import DatasetReconciler
from kubetune.controller.informer import Informer, WatchClient, WatchScope
from kubetune.controller.objects import DATASET, JOB, POD, TUNINGJOB, ObjectKey
from kubetune.controller.podrefusals import PodRefusals
from kubetune.controller.queue import WorkQueue
from kubetune.controller.reconciler import ControllerContext, Reconciler
from kubetune.controller.recorder import EventRecorder
from kubetune.controller.refusals import REASON as REFUSED
from kubetune.controller.refusals import RefusalLog, refusal_message
from kubetune.controller.tuningjob import TuningJobReconciler
from kubetune.kube import DATASETS, TUNINGJOBS, KubeClient
from kubetune.metrics import OperatorMetrics
from kubetune.settings import Settings
from kubetune.status import FINISHED_PHASES, TERMINAL_PHASES

logger = logging.getLogger(__name__)

# What the operator watches: its own kinds whole; Jobs and Pods by the label every Job and Pod
# it creates carries, if they belong to a TuningJob or a Dataset (a label selector cannot say
# "either label": that part is checked as they arrive). One watch per kind: the API server
# serves each event to each watch that selects it.
OURS: Final = (LABEL_MANAGED_BY, MANAGED_BY)
OWNERS: Final = (LABEL_TUNINGJOB, LABEL_DATASET)
WATCHED: Final = (
    (TUNINGJOBS, TUNINGJOB, API_VERSION, None, None, ()),
    (DATASETS, DATASET, API_VERSION, None, None, ()),
    ("jobs", JOB, "batch/v1", *OURS, OWNERS),
    ("pods", POD, "v1", *OURS, OWNERS),
)
_SETTLED_PHASES: Final = {TUNINGJOB: {p.value for p in TERMINAL_PHASES},
                          DATASET: {p.value for p in FINISHED_PHASES}}


def settled(kind: str, body: Mapping[str, Any]) -> bool:
    """Whether nothing is left to do for this version of a TuningJob or Dataset: it finished, for
    the spec it has now."""
    status = body.get("status") or {}
    generation = (body.get("metadata") or {}).get("generation")
    return status.get("phase") in _SETTLED_PHASES[kind] and status.get("observedGeneration") == generation


class Controller:
    def __init__(self, settings: Settings, kube: KubeClient, metrics: OperatorMetrics,
                 watch_client: WatchClient | None = None) -> None:
        """`watch_client` serves the informers' long-lived watches (default: `kube`); a client of
        its own keeps them off the connections the workers' requests use."""
        self.settings = settings
        queue: WorkQueue[ObjectKey] = WorkQueue(retry_base=min(1.0, max(0.1, float(settings.status_refresh_seconds))))
        self.ctx = ControllerContext(
            settings=settings, kube=kube, cache=InformerCache(), queue=queue,
            recorder=EventRecorder(kube, hold=lambda: queue.urgent_waiting() > 0), metrics=metrics,
            pod_refusals=PodRefusals(kube))
        tuningjobs = TuningJobReconciler(self.ctx)
        self.reconcilers: dict[str, Reconciler] = {
            TUNINGJOB: tuningjobs,
            DATASET: DatasetReconciler(self.ctx, tuningjobs.waiting_for),
        }
        metrics.watch_queue(lambda: len(self.ctx.queue))
        self._workers: list[threading.Thread] = []
        self._refusals = RefusalLog()
        client = watch_client or kube
        scopes: list[str | None] = list(settings.namespaces) or [None]
        self.informers = [
            Informer(client, WatchScope(plural, kind, api_version, namespace, label, value, owners),
                     functools.partial(self.observe, kind), functools.partial(self.ctx.cache.items, kind))
            for plural, kind, api_version, label, value, owners in WATCHED
            for namespace in scopes]

    @property
    def cache(self) -> InformerCache:
        return self.ctx.cache

    @property
    def queue(self) -> WorkQueue[ObjectKey]:
        return self.ctx.queue

    def observe(self, kind: str, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event: into the cache; if it is news, queue the TuningJob or Dataset it concerns."""
        deleted = event_type == "DELETED"
        if not self.ctx.cache.record(kind, body, deleted=deleted):
            return
        owner = self.ctx.cache.owner(kind, body)
        if owner is None:
            return
        reconciler = self.reconcilers.get(kind)
        urgent = reconciler is not None and not deleted and reconciler.needs_children(body)
        self.ctx.queue.add(owner, urgent=urgent)

    def prime(self) -> None:
        """The initial listing: every watched object into the cache; the unsettled ones queued."""
        for informer in self.informers:
            for obj in informer.list():
                self.ctx.cache.record(informer.scope.kind, obj)
        for kind, reconciler in self.reconcilers.items():
            for body in self.ctx.cache.items(kind):
                if not settled(kind, body):
                    meta = body["metadata"]
                    self.ctx.queue.add((kind, meta.get("namespace") or "default", meta["name"]),
                                       urgent=reconciler.needs_children(body))
        logger.info("cached %d TuningJobs, %d Datasets, %d Jobs, %d Pods; %d to reconcile",
                    *(self.ctx.cache.count(k) for k in (TUNINGJOB, DATASET, JOB, POD)), len(self.ctx.queue))

    def start(self) -> None:
        """The informers' watches (from the versions `prime` listed at), the Event poster, the workers."""
        if self._workers:
            return
        for informer in self.informers:
            informer.start()
        self.ctx.recorder.start()
        for index in range(max(1, self.settings.workers)):
            worker = threading.Thread(target=self._work, name=f"kubetune-worker-{index}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def stop(self, timeout: float = 5.0) -> None:
        """Let the passes in flight finish (for up to `timeout`), post the Events recorded, stop."""
        deadline = time.monotonic() + timeout
        for informer in self.informers:
            informer.stop(max(0.0, deadline - time.monotonic()))
        self.ctx.queue.shut_down()
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        self._workers = []
        self.ctx.recorder.stop(max(0.5, deadline - time.monotonic()))

    def _tell_refusal(self, key: ObjectKey, exc: Exception) -> None:
        message = refusal_message(exc)
        body = self.ctx.cache.get(*key) if message is not None else None
        if message is not None and body is not None and self._refusals.is_news(key, message):
            self.ctx.recorder.record(body, "Warning", REFUSED, message)

    def _work(self) -> None:
        queue = self.ctx.queue
        while (key := queue.get()) is not None:
            kind, namespace, name = key
            try:
                again = self.reconcilers[kind].reconcile(namespace, name)
            except Exception as exc:
                delay = queue.retry(key)
                logger.error("%s %s/%s: the pass failed (%s: %s); retrying in %.1fs", kind, namespace, name,
                             type(exc).__name__, exc, delay, exc_info=logger.isEnabledFor(logging.DEBUG))
                self._tell_refusal(key, exc)
            else:
                queue.forget(key)
                self._refusals.cleared(key)
                if again is None:
                    queue.cancel_delayed(key)
                else:
                    queue.add_after(key, again)
            finally:
                queue.done(key)
