"""Condition types and reasons of TuningJob and Dataset, and how a condition list is updated.

Conditions are states, not transitions: `set_condition` replaces a condition of the same type
and keeps its lastTransitionTime unless its status flips, so re-deriving changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

from kubetune.api import Condition, ConditionStatus


class TuningJobCondition:
    DATASETS_READY: Final = "DatasetsReady"
    PREFLIGHT_PASSED: Final = "PreflightPassed"
    JOB_CREATED: Final = "JobCreated"
    RUNNING: Final = "Running"
    SUCCEEDED: Final = "Succeeded"
    FAILED: Final = "Failed"
    MODEL_PUBLISHED: Final = "ModelPublished"
    SPEC_CHANGE_REJECTED: Final = "SpecChangeRejected"

    ORDER: Final = (DATASETS_READY, PREFLIGHT_PASSED, JOB_CREATED, RUNNING, SUCCEEDED, FAILED, MODEL_PUBLISHED,
                    SPEC_CHANGE_REJECTED)


class DatasetCondition:
    VALIDATED: Final = "Validated"
    READY: Final = "Ready"

    ORDER: Final = (VALIDATED, READY)


class Reason:
    """One CamelCase word per cause; the trainer's own FailureReason values are used as they are."""

    # Spec and data
    INVALID_SPEC: Final = "InvalidSpec"
    DATASET_NOT_FOUND: Final = "DatasetNotFound"
    DATASET_INVALID: Final = "DatasetInvalid"
    DATASET_PENDING: Final = "DatasetPending"
    WAITING_FOR_DATA: Final = "WaitingForData"
    DATASETS_READY: Final = "DatasetsReady"
    RESOLVED: Final = "Resolved"
    SPEC_FROZEN: Final = "SpecFrozen"
    SPEC_UNCHANGED: Final = "SpecUnchanged"
    # Job lifecycle
    NOT_CREATED: Final = "NotCreated"
    CREATED: Final = "Created"
    QUEUED: Final = "Queued"
    SUSPENDED: Final = "Suspended"
    STARTING: Final = "Starting"
    RETRYING: Final = "Retrying"
    RUNNING: Final = "Running"
    PUBLISHING: Final = "Publishing"
    COMPLETED: Final = "Completed"
    NOT_FINISHED: Final = "NotFinished"
    SUCCEEDED: Final = "Succeeded"
    FAILED: Final = "Failed"
    NOT_FAILED: Final = "NotFailed"
    PUSHED: Final = "Pushed"
    SAVED: Final = "Saved"
    NOT_PUBLISHED: Final = "NotPublished"
    # Pod trouble that keeps a run from starting (not terminal: fixing the cause lets it start)
    UNSCHEDULABLE: Final = "Unschedulable"
    IMAGE_PULL_BACK_OFF: Final = "ImagePullBackOff"
    ERR_IMAGE_PULL: Final = "ErrImagePull"
    INVALID_IMAGE_NAME: Final = "InvalidImageName"
    CREATE_CONTAINER_CONFIG_ERROR: Final = "CreateContainerConfigError"
    CREATE_CONTAINER_ERROR: Final = "CreateContainerError"
    POD_CREATION_REFUSED: Final = "PodCreationRefused"  # the Job controller's Pod refused (ResourceQuota, admission)
    # Failures seen by Kubernetes
    OOM_KILLED: Final = "OOMKilled"
    DEADLINE_EXCEEDED: Final = "DeadlineExceeded"
    BACKOFF_LIMIT_EXCEEDED: Final = "BackoffLimitExceeded"
    POD_FAILURE_POLICY: Final = "PodFailurePolicy"
    JOB_DELETED: Final = "JobDeleted"
    # The preflight (PreflightPassed); a failed check uses the check's own FailureReason
    CHECKING: Final = "Checking"
    PASSED: Final = "Passed"
    WONT_FIT: Final = "WontFit"  # passed, with a warning: the run may not fit the GPU
    PREFLIGHT_FAILED: Final = "PreflightFailed"  # the preflight Job failed without a report
    BATCH_REDUCED: Final = "BatchReduced"  # an Event: the trainer lowered the batch after CUDA OOM
    # Dataset validation
    VALIDATING: Final = "Validating"
    PENDING: Final = "Pending"
    VALID: Final = "Valid"
    INVALID_ROWS: Final = "InvalidRows"
    VALIDATION_FAILED: Final = "ValidationFailed"


# Waiting reasons the kubelet reports that stop a container from ever starting until someone acts.
BLOCKING_WAIT_REASONS: Final = frozenset({
    Reason.IMAGE_PULL_BACK_OFF, Reason.ERR_IMAGE_PULL, Reason.INVALID_IMAGE_NAME,
    Reason.CREATE_CONTAINER_CONFIG_ERROR, Reason.CREATE_CONTAINER_ERROR, Reason.UNSCHEDULABLE,
    Reason.POD_CREATION_REFUSED,
})


def get_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: Sequence[Condition], type_: str) -> bool:
    found = get_condition(conditions, type_)
    return found is not None and found.status is ConditionStatus.TRUE


def make_condition(
    previous: Sequence[Condition], type_: str, status: bool | ConditionStatus, reason: str, message: str,
    *, now: datetime, generation: int | None,
) -> Condition:
    """The condition `type_` in its new state; lastTransitionTime moves only when the status flips."""
    if isinstance(status, bool):
        status = ConditionStatus.TRUE if status else ConditionStatus.FALSE
    before = get_condition(previous, type_)
    changed = before is None or before.status != status or before.last_transition_time is None
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message[:32768],
        last_transition_time=now if changed else before.last_transition_time,  # type: ignore[union-attr]
        observed_generation=generation,
    )


def ordered(conditions: Sequence[Condition], order: Sequence[str]) -> list[Condition]:
    """Conditions in a fixed order (known types first), so equal states compare equal."""
    rank = {name: index for index, name in enumerate(order)}
    return sorted(conditions, key=lambda c: (rank.get(c.type, len(rank)), c.type))
