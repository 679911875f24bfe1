"""Events for `kubectl describe`, posted in the background by one thread, in the order recorded.

A worker records an Event and goes on to its next object; Events are helpful but auxiliary, so
one that cannot be posted is logged and dropped, never retried into a pass. Messages are
redacted and capped here, whoever recorded them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from kubetune.api.redact import redact
from kubetune.kube import KubeClient

logger = logging.getLogger(__name__)

COMPONENT: Final = "kubetune-operator"
# The API server caps an Event's note at 1 KiB; keep ours readable within it.
MESSAGE_LIMIT: Final = 1000
HOLD_SECONDS: Final = 2.0
HOLD_STEP_SECONDS: Final = 0.02


def event_body(involved: Mapping[str, Any], type: str, reason: str, message: str, *,
               now: datetime | None = None) -> dict[str, Any]:
    """A core/v1 Event about `involved` (a TuningJob or Dataset as the API server returned it)."""
    meta = involved.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    text = redact(message)
    if len(text) > MESSAGE_LIMIT:
        text = text[: MESSAGE_LIMIT - 1] + "…"
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"namespace": namespace, "generateName": f"{meta.get('name', 'kubetune')}."},
        "involvedObject": {"apiVersion": involved.get("apiVersion"), "kind": involved.get("kind"),
                           "namespace": namespace, "name": meta.get("name"), "uid": meta.get("uid"),
                           "resourceVersion": meta.get("resourceVersion")},
        "type": type, "reason": reason, "message": text,
        "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
    }


class EventRecorder:
    def __init__(self, kube: KubeClient, hold: Callable[[], bool] = lambda: False) -> None:
        """`hold()`: whether more pressing work is waiting (new runs whose Jobs are not created
        yet): Events then wait, for up to HOLD_SECONDS each, rather than compete with it."""
        self._kube = kube
        self._hold = hold
        self._queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def record(self, involved: Mapping[str, Any], type: str, reason: str, message: str) -> None:
        self._queue.put(event_body(involved, type, reason, message))

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="kubetune-events", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Post what is recorded so far (for up to `timeout` seconds), then stop."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            held_until = time.monotonic() + HOLD_SECONDS
            while self._hold() and time.monotonic() < held_until:
                time.sleep(HOLD_STEP_SECONDS)
            try:
                self._kube.create_event(event)
            except Exception as exc:  # an Event lost must not stop the ones after it
                logger.warning("could not post the %s Event about %s: %s", event["reason"],
                               event["involvedObject"].get("name"), exc)
