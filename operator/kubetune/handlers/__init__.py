"""kopf handlers of the operator: thin glue between kopf, the API server and the pure modules.

`main.build_registry` registers everything on a fresh `kopf.OperatorRegistry`; the handler
modules share one `OperatorContext` (settings, the API client, metrics, per-object locks).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from kubetune.kube import KubeClient
from kubetune.metrics import OperatorMetrics
from kubetune.settings import Settings


class KeyedLocks:
    """One lock per object: a timer, a Pod event and a spec change of the same TuningJob may
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


@dataclass
class OperatorContext:
    settings: Settings
    kube: KubeClient = field(default_factory=KubeClient)
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    locks: KeyedLocks = field(default_factory=KeyedLocks)
