"""A work queue of object keys, with client-go's workqueue guarantees, for a pool of worker threads.

- A key is queued at most once, however many times it is added before a worker takes it.
- A key is processed by one worker at a time: added again while being processed, it is
  marked dirty and queued once more when that worker is `done` with it, so the change that
  arrived mid-pass is never lost and never handled concurrently.
- `add_after(key, delay)` queues it later (progress refreshes, follow-ups, retries); of two
  pending delays for one key the earlier wins.
- Two priorities: an urgent key (an object whose children still have to be created) is taken
  before any ordinary one (a refresh of an object that is already running).
- `retry(key)` is `add_after` with a per-key exponential backoff that `forget(key)` resets.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

URGENT = 0
NORMAL = 1


class WorkQueue(Generic[K]):
    def __init__(self, *, retry_base: float = 1.0, retry_cap: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._lanes: tuple[deque[K], deque[K]] = (deque(), deque())
        # Keys waiting in a lane -> that lane. A lane may hold stale entries of a key that moved
        # to the other lane or was taken already; they are skipped when popped.
        self._queued: dict[K, int] = {}
        self._urgent = 0  # keys waiting in the urgent lane
        self._processing: set[K] = set()
        # Keys added while being processed -> the lane they go back to when the pass is done.
        self._dirty: dict[K, int] = {}
        self._delayed: list[tuple[float, int, K]] = []  # a heap of (due, tie-breaker, key)
        self._due: dict[K, float] = {}
        self._sequence = itertools.count()
        self._failures: dict[K, int] = {}
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self._clock = clock
        self._shut_down = False

    # --- adding ----------------------------------------------------------------------------

    def add(self, key: K, *, urgent: bool = False) -> None:
        with self._lock:
            self._add(key, URGENT if urgent else NORMAL)

    def _add(self, key: K, lane: int) -> None:
        if self._shut_down:
            return
        if key in self._processing:
            self._dirty[key] = min(lane, self._dirty.get(key, NORMAL))
            return
        queued = self._queued.get(key)
        if queued is not None and queued <= lane:
            return
        self._queued[key] = lane
        if lane == URGENT:
            self._urgent += 1
        self._lanes[lane].append(key)
        self._ready.notify()

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._lock:
            due = self._clock() + delay
            if self._shut_down or self._due.get(key, float("inf")) <= due:
                return
            self._due[key] = due
            heapq.heappush(self._delayed, (due, next(self._sequence), key))
            if self._delayed[0][2] == key:  # now the first due: a sleeping worker must wake sooner
                self._ready.notify()

    def retry(self, key: K) -> float:
        """Queue `key` again after a backoff that doubles with each failure in a row; the delay."""
        with self._lock:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        delay = min(self._retry_cap, self._retry_base * 2 ** min(failures, 30))
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """The key's last pass succeeded: its next failure starts the backoff over."""
        with self._lock:
            self._failures.pop(key, None)

    def cancel_delayed(self, key: K) -> None:
        """Drop a pending `add_after` (the object is gone, or needs no follow-up any more)."""
        with self._lock:
            self._due.pop(key, None)  # its heap entry is skipped when it comes due

    # --- taking ----------------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> K | None:
        """The next key to process (it is then `processing` until `done`); None on shut-down or timeout."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._lock:
            while True:
                self._promote_due()
                key = self._pop()
                if key is not None:
                    self._processing.add(key)
                    return key
                if self._shut_down:
                    return None
                wait = self._delayed[0][0] - self._clock() if self._delayed else None
                if deadline is not None:
                    left = deadline - self._clock()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._ready.wait(None if wait is None else max(wait, 0.001))

    def _promote_due(self) -> None:
        now = self._clock()
        while self._delayed and self._delayed[0][0] <= now:
            due, _, key = heapq.heappop(self._delayed)
            if self._due.get(key) == due:
                del self._due[key]
                self._add(key, NORMAL)

    def _pop(self) -> K | None:
        for lane, entries in enumerate(self._lanes):
            while entries:
                key = entries.popleft()
                if self._queued.get(key) == lane:
                    del self._queued[key]
                    if lane == URGENT:
                        self._urgent -= 1
                    return key
        return None

    def done(self, key: K) -> None:
        """The worker is finished with `key`; if it was added meanwhile, it is queued again."""
        with self._lock:
            self._processing.discard(key)
            lane = self._dirty.pop(key, None)
            if lane is not None:
                self._add(key, lane)

    # --- state -----------------------------------------------------------------------------

    def shut_down(self) -> None:
        """Wake every waiting worker; `get` answers None from now on, and adds are ignored."""
        with self._lock:
            self._shut_down = True
            self._ready.notify_all()

    def __len__(self) -> int:
        """Keys waiting to be taken now (delayed ones not counted)."""
        with self._lock:
            return len(self._queued)

    def urgent_waiting(self) -> int:
        """Urgent keys waiting to be taken: work that goes ahead of everything else (none once shut down)."""
        with self._lock:
            return 0 if self._shut_down else self._urgent

    def delayed(self) -> int:
        with self._lock:
            return len(self._due)
