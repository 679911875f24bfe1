"""When a training loss has diverged: pure, fed one logged loss at a time.

A NaN or infinite loss has diverged at once. A spike is a loss above `spikeFactor` times the
median of the last `window` unsuspicious losses; `patience` spikes in a row have diverged.
Spikes stay out of the median, so a sustained climb cannot raise its own bar. While the
latest loss is a spike the run is "suspect": no checkpoint should be saved then, so the
last checkpoint stays a good one.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass

from kubetune.api.guardrails import DivergenceSpec

MIN_HISTORY = 3  # losses needed before a spike can be told from noise


@dataclass(frozen=True)
class Divergence:
    step: int
    loss: float
    why: str  # for people: "the loss is nan" or "the loss was above 3x the recent median ..."


class DivergenceDetector:
    def __init__(self, spec: DivergenceSpec) -> None:
        self.spec = spec
        self.history: deque[float] = deque(maxlen=spec.window)
        self.spikes: list[tuple[int, float]] = []  # the current run of spikes: (step, loss)
        self.last_good_step: int | None = None
        self.diverged: Divergence | None = None

    @property
    def suspect(self) -> bool:
        return bool(self.spikes) or self.diverged is not None

    def observe(self, step: int, loss: float) -> Divergence | None:
        """Feed the loss logged at `step`; the Divergence once it has diverged (and from then on)."""
        if self.diverged is not None or not self.spec.enabled:
            return self.diverged
        if not math.isfinite(loss):
            self.diverged = Divergence(step, loss, f"the loss is {loss}")
            return self.diverged
        if len(self.history) >= min(MIN_HISTORY, self.spec.window):
            median = statistics.median(self.history)
            if median > 0 and loss > self.spec.spike_factor * median:
                self.spikes.append((step, loss))
                if len(self.spikes) >= self.spec.patience:
                    first, _ = self.spikes[0]
                    self.diverged = Divergence(
                        step, loss,
                        f"the loss stayed above {self.spec.spike_factor:g}x the recent median ({median:.4g}) for "
                        f"{len(self.spikes)} logging steps in a row, since step {first} (now {loss:.4g})")
                return self.diverged
        self.spikes.clear()
        self.history.append(loss)
        self.last_good_step = step
        return None
