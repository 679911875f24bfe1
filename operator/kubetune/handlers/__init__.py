"""kopf handlers of the operator: thin glue between kopf, the API server and the pure modules.

`main.build_registry` registers everything on a fresh `kopf.OperatorRegistry`; the handler
modules share one `OperatorContext` (settings, the API client, metrics, per-object locks).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from kubetune.kube import KubeClient
from kubetune.metrics import OperatorMetrics
from kubetune.settings import Settings

logger = logging.getLogger(__name__)


class KeyedLocks:
    """One lock per object: a poll, a Pod event and a spec change of the same TuningJob may
    arrive together in different worker threads; they must not derive and post events twice."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, ...], threading.Lock] = {}

    @contextmanager
    def hold(self, *key: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            yield

    def forget(self, *key: str) -> None:
        with self._guard:
            self._locks.pop(key, None)


class RunPoller:
    """Calls `poll(namespace, name)` every `interval` seconds for each object it follows.

    For what sends no watch event: a trainer's progress lives only in its Pod's log, a run
    waits for a Dataset, a pass failed on an API error and must be retried. Objects are
    followed only while one of these holds (the handlers decide), so a thousand TuningJobs
    waiting for GPUs cost nothing between events. A plain thread, not a kopf timer:
    kopf puts a finalizer on every object a timer could apply to, and a finalizer makes
    deletion wait for the operator.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._due: dict[tuple[str, str], float] = {}
        # The context of the handler that asked to follow: kopf keeps what `kopf.event` needs
        # (its settings, its event queue) in context variables of its handler threads.
        self._contexts: dict[tuple[str, str], contextvars.Context] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def follow(self, namespace: str, name: str, interval: float) -> None:
        with self._guard:
            if (namespace, name) not in self._due:
                self._due[(namespace, name)] = time.monotonic() + interval
                self._contexts[(namespace, name)] = contextvars.copy_context()

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._due.pop((namespace, name), None)
            self._contexts.pop((namespace, name), None)

    def following(self) -> set[tuple[str, str]]:
        with self._guard:
            return set(self._due)

    def start(self, poll: Callable[[str, str], None], interval: float) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(poll, interval), name="kubetune-poller",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self, poll: Callable[[str, str], None], interval: float) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            with self._guard:
                due = [(key, self._contexts[key]) for key, when in self._due.items() if when <= now]
                for key, _ in due:
                    self._due[key] = now + interval
                soonest = min(self._due.values(), default=now + interval)
            for (namespace, name), context in due:
                if self._stop.is_set():
                    return
                try:
                    context.copy().run(poll, namespace, name)
                except Exception:  # one run's trouble must not stop the others' refreshes
                    logger.exception("refreshing %s/%s failed; retrying in %ss", namespace, name, interval)
            self._stop.wait(max(0.05, soonest - time.monotonic()))


@dataclass
class OperatorContext:
    settings: Settings
    kube: KubeClient = field(default_factory=KubeClient)
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    locks: KeyedLocks = field(default_factory=KeyedLocks)
    poller: RunPoller = field(default_factory=RunPoller)
    # Per TuningJob reconciled by this process: the resourceVersion of its Job as last observed
    # (None: no Job). A Job watch event carrying that same version tells nothing new.
    seen_jobs: dict[tuple[str, str], str | None] = field(default_factory=dict)
    # TuningJobs whose Job this process is creating right now: the Job's ADDED event may reach
    # kopf before the pass that created it has recorded the version; it is that create's echo.
    creating_jobs: set[tuple[str, str]] = field(default_factory=set)
    # Per TuningJob: the resourceVersion its last status patch by this process produced. A watch
    # event carrying it is the echo of that patch.
    seen_tuningjobs: dict[tuple[str, str], str] = field(default_factory=dict)
