"""Why a Job has no Pod: the Job controller's FailedCreate Events, read when it was refused one.

When the API server refuses a Job's Pod (a ResourceQuota without room, a LimitRange, an
admission policy), the Job controller says so only in a Warning Event on the Job ("Error
creating: ...") and tries again later; without a Pod there are no Pod events either. What the
Job does show is the controller's sync that failed: it writes `status.startTime` with `active`
0 (a sync that created the Pod writes `active` 1). So a Job in that state, with no Pod in the
cache, has its FailedCreate Events read (one list the API server filters by the Job's name and
the reason), again every READ_INTERVAL_SECONDS while it stays so (sooner, NOT_YET_SECONDS, if the
Event was not posted yet), and the newest message goes into the Job's observation, which status
reports (reason PodCreationRefused). Nothing is read for a Job that got its Pod: every Job on a
healthy cluster, however slow its controller-manager.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Final

from kubernetes.client.exceptions import ApiException

from kubetune.kube import KubeClient
from kubetune.status.observe import JobObservation

logger = logging.getLogger(__name__)

READ_INTERVAL_SECONDS: Final = 30.0
NOT_YET_SECONDS: Final = 3.0  # the controller posts its Event after the status write, in the background
FAILED_CREATE: Final = "FailedCreate"


class PodRefusals:
    """The FailedCreate reads of refused Jobs, shared by the reconcilers (one pass per object at a
    time, but TuningJob and Dataset passes run in parallel)."""

    def __init__(self, kube: KubeClient, clock: Callable[[], float] = time.monotonic) -> None:
        self._kube = kube
        self._clock = clock
        self._lock = threading.Lock()
        # (namespace, Job) -> (clock time of its next read, the newest message at the last one)
        self._seen: dict[tuple[str, str], tuple[float, str | None]] = {}

    def observe(self, namespace: str, job: JobObservation | None, has_pods: bool) -> JobObservation | None:
        """`job`, with `pods_refused` set if the Job controller was refused its Pod and it has none since."""
        if job is None:
            return None
        refused = not has_pods and job.active == 0 and job.start_time is not None and not job.suspended \
            and not job.complete and job.failure_reason is None
        if not refused:
            self.forget(namespace, job.name)
            return job
        key, now = (namespace, job.name), self._clock()
        with self._lock:
            seen = self._seen.get(key)
        if seen is None or now >= seen[0]:
            try:
                message = _newest_message(self._kube.list_events(namespace, {
                    "involvedObject.kind": "Job", "involvedObject.name": job.name, "reason": FAILED_CREATE}))
                due = now + (READ_INTERVAL_SECONDS if message else NOT_YET_SECONDS)
            except ApiException as exc:
                # An explanation, not the run: a Role without `list events` (an older chart's) or a
                # server hiccup must not fail the pass. Said in the log; tried again later.
                logger.warning("could not read the FailedCreate Events of Job %s/%s: %s %s", namespace, job.name,
                               exc.status, exc.reason)
                message, due = None, now + READ_INTERVAL_SECONDS
            seen = (due, message)
            with self._lock:
                self._seen[key] = seen
        return replace(job, pods_refused=seen[1]) if seen[1] else job

    def next_read(self, namespace: str, job_name: str) -> float | None:
        """Seconds until this Job's next read is due (a timed pass should come then); None: none is."""
        with self._lock:
            seen = self._seen.get((namespace, job_name))
        return None if seen is None else max(0.01, seen[0] - self._clock())

    def forget(self, namespace: str, job_name: str) -> None:
        with self._lock:
            self._seen.pop((namespace, job_name), None)


def _newest_message(events: list[dict[str, object]]) -> str | None:
    def when(event: dict[str, object]) -> str:
        return str(event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp") or "")

    newest = max(events, key=when, default=None)
    if newest is None:
        return None
    return str(newest.get("message") or "") or None
