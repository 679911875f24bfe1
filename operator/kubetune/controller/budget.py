"""A rate budget (a token bucket that hands out reservations), for reads the operator may spread out.

`take` spends a token now whatever the balance (a read that must happen: the balance may go
below zero, and later reservations wait for it); `reserve` books the next free slot and answers
how long until it comes (0: now), as golang.org/x/time/rate's Reserve does. At most `rate`
slots a second are handed out, after an initial `burst`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateBudget:
    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a rate budget needs a positive rate and burst, not {rate}/s and {burst}")
        self.rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._at = clock()
        self._lock = threading.Lock()

    def _refill(self) -> float:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        return now

    def take(self) -> None:
        with self._lock:
            self._refill()
            self._tokens -= 1

    def reserve(self) -> float:
        """Book a slot; seconds until it comes (0.0: now)."""
        with self._lock:
            self._refill()
            self._tokens -= 1
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate
