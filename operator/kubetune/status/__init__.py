"""Status derivation, pure: what was observed of a run or a validation -> status, conditions, Events.

One package for the operator and the local mode alike. The operator fills the observations
from its cache of the API server, the local mode from the processes it runs; both derive with
the same functions, so `kubectl describe` and `kubetune run` tell the same story.

    observe.py         Job and Pod dicts -> JobObservation, PodObservation; termination messages
    conditions.py      condition types, reasons, and how a condition list is updated
    diagnosis.py       why a Pod does not start or a run failed, and what to do about it
    runobservation.py  RunObservation: what is known of a run; which Datasets hold it back
    verdict.py         RunObservation -> the run's phase, message and failure
    tuningjob.py       RunObservation -> TuningJobStatus (the verdict, conditions, progress, times)
    dataset.py         a validation's Job, Pod and report -> DatasetStatus
    events.py          the Events a step from one status to the next deserves
    guardrails.py      the preflight's verdict, status.pinned and status.usage
"""

from kubetune.status.dataset import FINISHED_PHASES, derive_dataset_status
from kubetune.status.events import EventRecord, dataset_events, status_events
from kubetune.status.runobservation import (
    DatasetIssue,
    DatasetsObservation,
    RunObservation,
    observe_datasets,
    referenced_datasets,
    run_size,
    spec_changed_after_start,
)
from kubetune.status.tuningjob import TERMINAL_PHASES, derive_status

__all__ = [
    "FINISHED_PHASES", "TERMINAL_PHASES", "DatasetIssue", "DatasetsObservation", "EventRecord", "RunObservation",
    "dataset_events", "derive_dataset_status", "derive_status", "observe_datasets", "referenced_datasets",
    "run_size", "spec_changed_after_start", "status_events",
]
