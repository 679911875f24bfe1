"""What the user watches while a job runs: a live bar on a terminal, plain lines elsewhere.

On a terminal the bar redraws one line in place; in a pipe, a CI log or a file every
progress event becomes its own line, so the record reads top to bottom without control codes.
"""

from __future__ import annotations

import shutil
import sys
from typing import TextIO

from kubetune.api.progress import ProgressEvent

_BAR_WIDTH = 24


def format_duration(seconds: float | None) -> str:
    """0:07, 12:34, 1:02:03."""
    if seconds is None:
        return "?"
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def progress_fields(event: ProgressEvent) -> list[str]:
    """The figures shared by the bar and the plain line, in reading order."""
    fields = []
    if event.loss is not None:
        fields.append(f"loss {format_loss(event.loss)}")
    if event.eval_loss is not None:
        fields.append(f"eval loss {format_loss(event.eval_loss)}")
    if event.tokens_per_second is not None:
        fields.append(f"{event.tokens_per_second:,.0f} tok/s")
    if event.eta_seconds is not None:
        fields.append(f"ETA {format_duration(event.eta_seconds)}")
    return fields


def render_bar(event: ProgressEvent, width: int = _BAR_WIDTH) -> str:
    """`  40% [#########...............] 120/300  loss 1.2340  3,456 tok/s  ETA 0:42`."""
    percent = event.percent or 0
    filled = width * percent // 100
    bar = "#" * filled + "." * (width - filled)
    head = f"{percent:3d}% [{bar}] {event.step}/{event.total_steps or '?'}"
    return "  ".join([head, *progress_fields(event)])


def render_line(event: ProgressEvent) -> str:
    """`step 120/300 (40%)  loss 1.2340  3,456 tok/s  ETA 0:42`: one line per event, no redraws."""
    percent = event.percent
    head = f"step {event.step}/{event.total_steps or '?'}" + (f" ({percent}%)" if percent is not None else "")
    return "  ".join([head, *progress_fields(event)])


class ProgressDisplay:
    """Prints stage messages and progress; redraws a bar in place only on a terminal."""

    def __init__(self, stream: TextIO | None = None, *, interactive: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self._bar_shown = False
        self._last: ProgressEvent | None = None

    def message(self, text: str) -> None:
        """A line of its own (a stage change, a note), above the bar if one is shown."""
        self._clear_bar()
        print(text, file=self.stream, flush=True)

    def progress(self, event: ProgressEvent) -> None:
        if self.interactive and self._last is not None:
            # An evaluation line lacks the training loss: the bar keeps showing the latest known one.
            merged = self._last.model_dump()
            merged.update({k: v for k, v in event.model_dump().items() if v is not None})
            event = ProgressEvent.model_validate(merged)
        self._last = event
        if not self.interactive:
            print(render_line(event), file=self.stream, flush=True)
            return
        columns = shutil.get_terminal_size((100, 24)).columns
        line = render_bar(event)[: max(20, columns - 1)]
        self.stream.write("\r\x1b[2K" + line)
        self.stream.flush()
        self._bar_shown = True

    def close(self) -> None:
        """Leave the last bar on screen and move below it."""
        if self._bar_shown:
            self.stream.write("\n")
            self.stream.flush()
            self._bar_shown = False

    def _clear_bar(self) -> None:
        if self._bar_shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._bar_shown = False
