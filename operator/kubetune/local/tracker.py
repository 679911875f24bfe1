"""A local run's TuningJob status, kept as the operator would keep it, with the Events each change deserves."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from kubetune.api import TuningJob, TuningJobStatus
from kubetune.api.guardrails import PinnedDataset
from kubetune.local.describe import TimedEvent
from kubetune.status import RunObservation, derive_status, status_events
from kubetune.status.events import EventRecord


def utc_now() -> datetime:
    """One clock for the local run: status times, Event times and the pipeline's start times."""
    return datetime.now(UTC)


class StatusTracker:
    """The TuningJob's status as the operator would keep it, and the Events each change deserves."""

    def __init__(self, job: TuningJob, log_tail_lines: int, *, world_size: int | None = None,
                 effective_batch_size: int | None = None) -> None:
        self.job = job
        self.log_tail_lines = log_tail_lines
        self.world_size = world_size
        self.effective_batch_size = effective_batch_size
        self.status: TuningJobStatus | None = None
        self.events: list[TimedEvent] = []
        self.pins: tuple[PinnedDataset, ...] = ()  # each dataset's revision, for status.pinned

    def note(self, record: EventRecord) -> None:
        """An Event the local mode itself posts (the operator has no such moment)."""
        self.events.append(TimedEvent(record, utc_now()))

    def observe(self, obs: RunObservation) -> TuningJobStatus:
        now = utc_now()
        obs = replace(obs, world_size=self.world_size, effective_batch_size=self.effective_batch_size)
        status = derive_status(self.status, obs, now=now, log_tail_lines=self.log_tail_lines)
        records: list[EventRecord] = status_events(self.status, status)
        self.events.extend(TimedEvent(record, now) for record in records)
        self.status = status
        return status

    def current(self) -> TuningJob:
        return self.job.model_copy(update={"status": self.status})
