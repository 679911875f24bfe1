"""The operator's own watches: one kind, in one namespace (or all), selected by label, into the cache.

client-go's reflector in small: list (the cache's starting point and the version the listing
is consistent at), then watch from that version, each event handed to `deliver` as it comes.
A watch the server ends (its timeout) or a dropped connection resumes from the last version
seen (bookmarks keep it fresh on a quiet watch). A version the server no longer keeps (410
Gone: the watch expired) means events were missed: the informer lists again, and every cached
object of its scope that the new listing lacks was deleted meanwhile, so it is delivered as
deleted (its owner is reconciled, and the cache forgets it).

The label selector goes to the API server, so the operator receives the events of its own
Jobs and Pods only; each event is a JSON parse and a dictionary update, where kopf spent about
a millisecond of its event loop (docs/benchmarks.md, control plane round 4).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from kubernetes.client.exceptions import ApiException

from kubetune.controller.objects import Obj, key_of

logger = logging.getLogger(__name__)

GONE: Final = 410
# client-go's reflector watches for a random 5-10 minutes before it starts the watch over.
_WATCH_SECONDS: Final = (300, 600)
_BACKOFF_START: Final = 0.5
_BACKOFF_CAP: Final = 30.0


@dataclass(frozen=True)
class WatchScope:
    """What one informer lists and watches."""

    plural: str  # as the API path names it: tuningjobs, datasets, jobs, pods
    kind: str
    api_version: str
    namespace: str | None  # None: every namespace
    label: str | None = None  # the label selector the server applies: objects with this label...
    value: str | None = None  # ... of this value (None: any value)
    owners: tuple[str, ...] = ()  # and, checked here, one of these labels (none: not checked)

    @property
    def labels(self) -> dict[str, str | None] | None:
        return {self.label: self.value} if self.label else None

    def selects(self, obj: Mapping[str, Any]) -> bool:
        """Whether an object is one this informer is about (its labels; the namespace is the server's)."""
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if self.label is not None and (self.label not in labels or
                                       (self.value is not None and labels[self.label] != self.value)):
            return False
        return not self.owners or any(owner in labels for owner in self.owners)

    def covers(self, obj: Mapping[str, Any]) -> bool:
        """Whether a cached object is one this informer lists (so its absence from a listing means deleted)."""
        meta = obj.get("metadata") or {}
        if self.namespace is not None and (meta.get("namespace") or "default") != self.namespace:
            return False
        return self.selects(obj)

    def __str__(self) -> str:
        where = f"namespace {self.namespace}" if self.namespace else "all namespaces"
        selector = f", label {self.label}{f'={self.value}' if self.value else ''}" if self.label else ""
        return f"{self.plural} ({where}{selector})"


class EventStream(Protocol):
    """One watch's events as they arrive (`kubetune.kube.WatchStream`); `close` ends it from any thread."""

    def __iter__(self) -> Iterator[Obj]: ...

    def close(self) -> None: ...


class WatchClient(Protocol):
    """The two calls an informer makes (`kubetune.kube.KubeClient` has them)."""

    def list_snapshot(self, plural: str, namespace: str | None, *,
                      labels: Mapping[str, str | None] | None = None) -> tuple[list[Obj], str]: ...

    def watch(self, plural: str, namespace: str | None, *, version: str,
              labels: Mapping[str, str | None] | None = None, timeout_seconds: int = 300) -> EventStream: ...


# deliver(event type or None for a listed object, body)
Deliver = Callable[[str | None, Obj], None]


class WatchExpired(Exception):
    """The version to watch from is older than the server keeps: list again."""


class Informer:
    def __init__(self, client: WatchClient, scope: WatchScope, deliver: Deliver,
                 cached: Callable[[], Iterable[Obj]], *, backoff_start: float = _BACKOFF_START) -> None:
        """`cached` answers the objects of this kind the cache holds now (of any scope)."""
        self.scope = scope
        self._client = client
        self._deliver = deliver
        self._cached = cached
        self._backoff_start = backoff_start
        self._version: str | None = None
        self._stopped = threading.Event()
        self._stream_lock = threading.Lock()
        self._stream: EventStream | None = None
        self._thread: threading.Thread | None = None

    @property
    def version(self) -> str | None:
        """The last resourceVersion seen (None: a listing is due)."""
        return self._version

    def list(self) -> list[Obj]:
        """List the scope: its objects (with their kind, which list items lack); the watch starts after them."""
        items, version = self._client.list_snapshot(self.scope.plural, self.scope.namespace, labels=self.scope.labels)
        self._version = version
        return [self._typed(item) for item in items if self.scope.selects(item)]

    def _typed(self, obj: Mapping[str, Any]) -> Obj:
        # List items carry no kind of their own on a real API server; watch events do.
        if "kind" in obj:
            return obj if isinstance(obj, dict) else dict(obj)
        return {"apiVersion": self.scope.api_version, "kind": self.scope.kind, **obj}

    def relist(self) -> None:
        """List again and deliver the difference: what is gone as deleted, every listed object as listed."""
        listed = self.list()
        present = {key_of(self.scope.kind, obj) for obj in listed}
        for obj in list(self._cached()):
            if self.scope.covers(obj) and key_of(self.scope.kind, obj) not in present:
                self._deliver("DELETED", obj)
        for obj in listed:
            self._deliver(None, obj)

    def start(self) -> None:
        """Watch in a thread of its own from the listed version (or list first, if none was)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"kubetune-watch-{self.scope.plural}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        with self._stream_lock:
            if self._stream is not None:
                self._stream.close()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        failures = 0
        while not self._stopped.is_set():
            try:
                if self._version is None:
                    self.relist()
                self.watch_once()
                failures = 0
            except WatchExpired:
                logger.info("watch of %s expired (410 Gone): listing again", self.scope)
                self._version = None
                failures = 0
            except Exception as exc:
                if self._stopped.is_set():
                    return
                delay = min(_BACKOFF_CAP, self._backoff_start * 2 ** min(failures, 10))
                failures += 1
                logger.warning("watch of %s failed (%s: %s); again in %.1fs", self.scope,
                               type(exc).__name__, exc, delay)
                self._stopped.wait(delay)

    def watch_once(self) -> None:
        """One watch from the current version, until the server ends it; raises WatchExpired on 410."""
        assert self._version is not None
        try:
            stream = self._client.watch(self.scope.plural, self.scope.namespace, version=self._version,
                                        labels=self.scope.labels, timeout_seconds=random.randint(*_WATCH_SECONDS))
        except ApiException as exc:
            if exc.status == GONE:
                raise WatchExpired() from exc
            raise
        with self._stream_lock:
            if self._stopped.is_set():
                stream.close()
            self._stream = stream
        try:
            for event in stream:
                if self._stopped.is_set():
                    return
                self._handle(event)
        finally:
            with self._stream_lock:
                self._stream = None

    def _handle(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            code = obj.get("code")
            if code == GONE:
                raise WatchExpired()
            raise RuntimeError(f"the watch answered an error: {obj.get('code')} {obj.get('message')}")
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind != "BOOKMARK" and self.scope.selects(obj):
            # Checked here too: a server that ignores the selector (a test emulator) must not
            # make the operator act on someone else's objects.
            self._deliver(str(kind), self._typed(obj))
        if version:
            self._version = str(version)
