"""What is known of a TuningJob's run at one moment (RunObservation), and what goes into it.

The operator fills one from its cache of the API server, the local mode from the processes it
runs; which referenced Datasets hold the run back, its size and whether its spec changed after
the Job started are worked out here for both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from kubetune.api import Dataset, DatasetPhase, TuningJobSpec
from kubetune.api.distributed import effective_batch_size, world_size
from kubetune.api.guardrails import PinnedDataset
from kubetune.api.progress import LogSummary
from kubetune.builders.names import spec_hash
from kubetune.status.conditions import Reason
from kubetune.status.diagnosis import Diagnosis, clip
from kubetune.status.guardrails import PreflightObservation
from kubetune.status.observe import JobObservation, NodeFailure, PodObservation, PodTimes


@dataclass(frozen=True)
class DatasetIssue:
    name: str
    reason: str
    message: str


@dataclass(frozen=True)
class DatasetsObservation:
    """The referenced Datasets that keep a run from starting (all empty: every one is Ready)."""

    missing: tuple[str, ...] = ()
    pending: tuple[DatasetIssue, ...] = ()
    invalid: tuple[DatasetIssue, ...] = ()

    @property
    def ready(self) -> bool:
        return not (self.missing or self.pending or self.invalid)

    def diagnosis(self) -> Diagnosis:
        parts = [f"Dataset {name} was not found" for name in self.missing]
        parts += [f"Dataset {i.name} is {i.reason}: {i.message}" if i.message else f"Dataset {i.name} is {i.reason}"
                  for i in self.invalid]
        parts += [f"Dataset {i.name}: {i.message}" for i in self.pending]
        reason = (Reason.DATASET_NOT_FOUND if self.missing else
                  Reason.DATASET_INVALID if self.invalid else Reason.DATASET_PENDING)
        return Diagnosis(reason, clip("; ".join(parts)))


def referenced_datasets(spec: TuningJobSpec) -> list[str]:
    entries = [*spec.datasets.train, *spec.datasets.validation]
    return list(dict.fromkeys(e.dataset for e in entries if e.dataset is not None))


def observe_datasets(names: Iterable[str], datasets: Mapping[str, Dataset]) -> DatasetsObservation:
    """Which of the named Datasets are missing, not validated yet (for their current spec) or bad."""
    missing: list[str] = []
    pending: list[DatasetIssue] = []
    invalid: list[DatasetIssue] = []
    for name in dict.fromkeys(names):
        dataset = datasets.get(name)
        if dataset is None:
            missing.append(name)
            continue
        status = dataset.status
        generation = dataset.metadata.generation
        stale = (status is not None and status.observed_generation is not None and generation is not None
                 and status.observed_generation < generation)
        if status is None or status.phase in (None, DatasetPhase.PENDING, DatasetPhase.VALIDATING) or stale:
            pending.append(DatasetIssue(name, Reason.VALIDATING, "waiting for validation"))
        elif status.phase in (DatasetPhase.INVALID, DatasetPhase.FAILED):
            invalid.append(DatasetIssue(name, status.phase.value, status.message or status.reason or ""))
    return DatasetsObservation(tuple(missing), tuple(pending), tuple(invalid))


def run_size(spec: TuningJobSpec) -> tuple[int, int]:
    """(world size, effective batch) of a run as its spec asks for it."""
    world = world_size(spec.resources.nodes, spec.resources.gpus)
    hp = spec.hyperparameters
    return world, effective_batch_size(hp.per_device_batch_size, world, hp.gradient_accumulation_steps)


def spec_changed_after_start(job: JobObservation | None, spec: TuningJobSpec,
                             current_hash: Callable[[], str] | None = None) -> bool:
    """Whether the spec differs from the one the Job was rendered from (False when that is unknown).

    `current_hash` answers `spec_hash(spec)` where the caller keeps it (it is asked only when needed).
    """
    if job is None or job.spec_hash is None:
        return False
    return job.spec_hash != (current_hash() if current_hash is not None else spec_hash(spec))


@dataclass(frozen=True)
class RunObservation:
    """Everything known about a run at one moment. Unknown parts keep their defaults."""

    generation: int | None = None
    spec_error: str | None = None
    datasets: DatasetsObservation = field(default_factory=DatasetsObservation)
    job: JobObservation | None = None  # None: no Job (yet, or any more)
    pod: PodObservation | None = None  # the Job's newest Pod
    log: LogSummary | None = None  # None: the log was not read this time; keep what status has
    spec_changed_after_start: bool = False
    suspend_requested: bool = False  # spec.suspend; tells a user's suspension from a Kueue queue
    world_size: int | None = None  # training processes of the run (None: unknown, keep what status has)
    effective_batch_size: int | None = None
    preflight: PreflightObservation | None = None  # None: no preflight (spec.guardrails.preflight false)
    pinned_datasets: tuple[PinnedDataset, ...] = ()  # each dataset's revision, recorded once the run starts
    pod_times: PodTimes | None = None  # run time of the training Job's Pods, for status.usage
    # Of a multi-node run, a failure another node told of (the cause when node 0's only followed it)
    failure_elsewhere: NodeFailure | None = None
