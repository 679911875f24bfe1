"""client-go's delaying work queue, for the emulated controllers: keys synced later, by workers.

`add(key, delay)` asks for a sync no sooner than `delay` from now; asking again before then
keeps the earlier time (so events within a batch period make one sync). A key is never synced
by two workers at once: one asked for while its sync runs is synced again after it. A sync
that raises an API error is retried after a second (DefaultJobApiBackOff).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import aiohttp

from support.kube_client import ApiError

K = TypeVar("K")
RETRY_SECONDS = 1.0


class WorkQueue(Generic[K]):
    def __init__(self, sync: Callable[[K], Awaitable[None]], workers: int) -> None:
        self._sync = sync
        self._workers = workers
        self._due: dict[K, float] = {}
        self._wake = asyncio.Event()
        self._ready: asyncio.Queue[K] = asyncio.Queue()
        self._processing: set[K] = set()
        self._dirty: set[K] = set()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> list[asyncio.Task[None]]:
        self._tasks = [asyncio.create_task(self._schedule())]
        self._tasks += [asyncio.create_task(self._work()) for _ in range(self._workers)]
        return self._tasks

    def add(self, key: K, delay: float = 0.0) -> None:
        due = time.monotonic() + delay
        if key not in self._due or due < self._due[key]:
            self._due[key] = due
            self._wake.set()

    async def _schedule(self) -> None:
        while True:
            now = time.monotonic()
            for key in [k for k, due in self._due.items() if due <= now]:
                del self._due[key]
                if key in self._processing:
                    self._dirty.add(key)
                else:
                    self._processing.add(key)
                    self._ready.put_nowait(key)
            self._wake.clear()
            timeout = min(self._due.values(), default=now + 3600) - now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.001, timeout))

    async def _work(self) -> None:
        while True:
            key = await self._ready.get()
            try:
                await self._sync(key)
            except (ApiError, aiohttp.ClientError):
                self.add(key, RETRY_SECONDS)
            finally:
                self._processing.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)
