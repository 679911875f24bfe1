"""The informer cache: the latest version of every watched object, and which objects each one owns.

Filled by the watch events (and the listing at start), and by the answers to the operator's
own writes ("write-through"), so that a pass right after a write sees it even before its watch
event arrives. Reconcile passes read it instead of the API server.

An event whose resourceVersion is the one already cached tells nothing new: typically the echo
of the operator's own write, already written through. `record` answers whether an event is
news, and only news wakes a worker.

Bodies handed out are shared, not copied: readers must not change them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Mapping
from typing import Any, Final

from kubetune.controller.objects import (
    JOB,
    RECONCILED_KINDS,
    Obj,
    ObjectKey,
    essentials,
    key_of,
    parent_of,
    version_of,
)

# Versions of an object the watch delivered recently: a written-through answer whose version is
# among them is already cached (or superseded) and must not overwrite what came later.
_STREAMED_VERSIONS: Final = 4
# Deleted objects remembered, so that the late answer to a write cannot bring one back.
_TOMBSTONES: Final = 10_000


class InformerCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, dict[ObjectKey, Obj]] = {}  # by kind
        self._parents: dict[ObjectKey, ObjectKey] = {}
        self._children: dict[ObjectKey, set[ObjectKey]] = {}
        self._streamed: dict[ObjectKey, deque[str]] = {}
        self._tombstones: OrderedDict[ObjectKey, None] = OrderedDict()

    # --- writing ---------------------------------------------------------------------------

    def record(self, kind: str, obj: Mapping[str, Any], *, deleted: bool = False) -> bool:
        """A watch event (or a listed object): store it; whether it is news.

        A deletion is always news. Otherwise news means a resourceVersion other than the cached one.
        """
        key = key_of(kind, obj)
        version = version_of(obj)
        with self._lock:
            if deleted:
                self._drop(key)
                self._tombstones[key] = None
                self._tombstones.move_to_end(key)
                if len(self._tombstones) > _TOMBSTONES:
                    self._tombstones.popitem(last=False)
                return True
            self._tombstones.pop(key, None)
            if version is not None:
                streamed = self._streamed.setdefault(key, deque(maxlen=_STREAMED_VERSIONS))
                streamed.append(version)
            if version is not None and version_of(self._objects.get(kind, {}).get(key)) == version:
                return False
            self._store(key, kind, obj)
            return True

    def write(self, kind: str, obj: Mapping[str, Any]) -> None:
        """The API server's answer to the operator's own create or patch: what it now holds."""
        key = key_of(kind, obj)
        version = version_of(obj)
        with self._lock:
            if key in self._tombstones:
                return  # deleted meanwhile: the answer is older than the deletion
            if version is not None and version in self._streamed.get(key, ()):
                return  # the watch delivered this version already, and perhaps newer ones since
            self._store(key, kind, obj)

    def _store(self, key: ObjectKey, kind: str, obj: Mapping[str, Any]) -> None:
        self._objects.setdefault(kind, {})[key] = essentials(kind, obj)
        parent = parent_of(kind, obj)
        old = self._parents.get(key)
        if old == parent:
            return
        if old is not None:
            self._unlink(old, key)
        if parent is not None:
            self._parents[key] = parent
            self._children.setdefault(parent, set()).add(key)

    def _drop(self, key: ObjectKey) -> None:
        self._objects.get(key[0], {}).pop(key, None)
        self._streamed.pop(key, None)
        parent = self._parents.pop(key, None)
        if parent is not None:
            self._unlink(parent, key)

    def _unlink(self, parent: ObjectKey, child: ObjectKey) -> None:
        siblings = self._children.get(parent)
        if siblings is not None:
            siblings.discard(child)
            if not siblings:
                del self._children[parent]

    # --- reading ---------------------------------------------------------------------------

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        with self._lock:
            return self._objects.get(kind, {}).get((kind, namespace, name))

    def owned(self, owner: ObjectKey, kind: str) -> list[Obj]:
        """The cached objects of `kind` whose owner (see `parent_of`) is `owner`."""
        with self._lock:
            objects = self._objects.get(kind, {})
            return [objects[k] for k in self._children.get(owner, ()) if k in objects]

    def owner(self, kind: str, obj: Mapping[str, Any]) -> ObjectKey | None:
        """The TuningJob or Dataset an object belongs to: itself, a Job's owner, or a Pod's Job's owner.

        None for a Pod whose Job is not cached yet: that Job's own event names the owner.
        """
        if kind in RECONCILED_KINDS:
            return key_of(kind, obj)
        parent = parent_of(kind, obj)
        if parent is None or parent[0] != JOB:
            return parent
        with self._lock:
            return self._parents.get(parent)

    def items(self, kind: str, namespace: str | None = None) -> list[Obj]:
        with self._lock:
            return [obj for (_, ns, _), obj in self._objects.get(kind, {}).items()
                    if namespace is None or ns == namespace]

    def count(self, kind: str) -> int:
        with self._lock:
            return len(self._objects.get(kind, {}))
