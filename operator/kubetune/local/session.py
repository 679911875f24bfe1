"""One local run of the trainer or validator seen as the operator sees a Job and its Pod.

The process stands in for the Pod: running -> a running container, exited -> a terminated
container with the exit code and the result file as its termination message. These become
the same JobObservation/PodObservation the operator builds from the API server, so the
status derivation (phases, conditions, reasons, events) is the cluster's own.
"""

from __future__ import annotations

from datetime import datetime

from kubetune.api import ExitCode
from kubetune.local.runner import ProcessOutcome
from kubetune.status.conditions import Reason
from kubetune.status.observe import JobObservation, PodObservation, TerminatedState


def running_observation(job_name: str, pod_name: str, started: datetime) -> tuple[JobObservation, PodObservation]:
    job = JobObservation(name=job_name, created_at=started, active=1, start_time=started)
    pod = PodObservation(name=pod_name, phase="Running", created_at=started, running_since=started)
    return job, pod


def finished_observation(job_name: str, pod_name: str,
                         outcome: ProcessOutcome) -> tuple[JobObservation, PodObservation]:
    """The Job and Pod after the process ended. The local mode does not retry: one failure ends the run."""
    succeeded = outcome.exit_code == ExitCode.OK
    if outcome.signal is not None:
        reason, failure = "Error", f"the process was killed by signal {outcome.signal}"
    elif succeeded:
        reason, failure = "Completed", None
    else:
        reason, failure = "Error", f"the process exited with code {outcome.exit_code}"
    terminated = TerminatedState(exit_code=outcome.exit_code, reason=reason, message=outcome.termination_message,
                                 started_at=outcome.started_at, finished_at=outcome.finished_at)
    pod = PodObservation(name=pod_name, phase="Succeeded" if succeeded else "Failed", created_at=outcome.started_at,
                         terminated=terminated)
    job = JobObservation(
        name=job_name, created_at=outcome.started_at, start_time=outcome.started_at,
        succeeded=1 if succeeded else 0, failed=0 if succeeded else 1, complete=succeeded,
        completion_time=outcome.finished_at if succeeded else None,
        failure_reason=None if succeeded else Reason.FAILED, failure_message=failure,
        failed_at=None if succeeded else outcome.finished_at,
    )
    return job, pod
