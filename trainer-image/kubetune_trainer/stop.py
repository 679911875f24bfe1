"""A clean stop on SIGTERM/SIGINT (a Pod being evicted, Ctrl-C in local mode).

Installed first thing by the train command, before any heavy import, so a stop at any
moment ends with a result. The training stage's callback turns a request into "save a
checkpoint and stop" once training runs.
"""

from __future__ import annotations

import signal
from types import FrameType


class StopRequest:
    """Set by SIGTERM/SIGINT. Before training starts the signal raises at once (nothing to save);
    during training the current step finishes, a checkpoint is saved and training stops."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self.training = False

    def install(self) -> None:
        self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)}

    def uninstall(self) -> None:
        for sig, handler in getattr(self, "_previous", {}).items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = signal.Signals(signum).name
        if not self.training:
            raise KeyboardInterrupt(self.requested)
