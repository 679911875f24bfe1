"""Status of a run that keeps its work across Pods: where its folder is, which checkpoint an
attempt resumed from (and one Event per such attempt), a stopped trainer that a new Pod resumes,
and a failed push that says where the model lies."""

from __future__ import annotations

import json
from typing import Any

from test_status import cond, derive, failure_message, job_condition, job_dict, obs, pod_dict, running, terminated

from kubetune.api import TuningJobPhase
from kubetune.api.progress import ProgressEvent, format_event
from kubetune.status import status_events

WORK_DIR = "pvc:ministral-support-work/runs/0b7c-9d2e1f30a4b5c6d7"


def annotated_job(**kw: Any) -> dict[str, Any]:
    job = job_dict(**kw)
    job["metadata"]["annotations"]["kubetune.io/work-dir"] = WORK_DIR
    return job


def resumed_lines(step: int, resumed_from: int | None, attempt: int) -> list[str]:
    return [format_event(ProgressEvent(step=step, total_steps=1000, loss=1.2 if step > (resumed_from or 0) else None,
                                       resumed_from_step=resumed_from, attempt=attempt))]


def test_the_status_says_where_the_run_keeps_its_work() -> None:
    status = derive(obs(annotated_job(active=1)))
    assert status.work_dir == WORK_DIR
    # Kept when the Job is gone (its TTL), like jobName.
    assert derive(obs(None), previous=status).work_dir == WORK_DIR


def test_a_resumed_attempt_is_in_the_progress_and_gets_one_event() -> None:
    first = derive(obs(annotated_job(active=1), [pod_dict(phase="Running", state=running())],
                       resumed_lines(300, None, 1)))
    assert first.progress is not None and first.progress.resumed_from_step is None
    assert "ResumedFromCheckpoint" not in [e.reason for e in status_events(None, first)]

    # The Pod was preempted; its replacement resumed from the checkpoint at step 250.
    replaced = pod_dict(phase="Running", state=running(), name="ministral-support-train-fghij", created=40)
    second = derive(obs(annotated_job(active=1), [replaced], resumed_lines(250, 250, 2)), previous=first)
    assert second.progress is not None
    assert (second.progress.step, second.progress.resumed_from_step, second.progress.attempt) == (250, 250, 2)
    events = [e for e in status_events(first, second) if e.reason == "ResumedFromCheckpoint"]
    assert [(e.type, e.message) for e in events] == [("Normal", "Resumed from checkpoint step 250 (attempt 2)")]

    # Later lines of the same attempt: no second Event.
    later = derive(obs(annotated_job(active=1), [replaced], resumed_lines(260, 250, 2)), previous=second)
    assert [e.reason for e in status_events(second, later)].count("ResumedFromCheckpoint") == 0
    # A third attempt resuming from that same checkpoint is news again.
    third = derive(obs(annotated_job(active=1), [replaced], resumed_lines(250, 250, 3)), previous=later)
    assert [e.message for e in status_events(later, third) if e.reason == "ResumedFromCheckpoint"] == [
        "Resumed from checkpoint step 250 (attempt 3)"]


def test_a_stopped_trainer_is_resumed_not_failed() -> None:
    interrupted = json.dumps({"status": "Failed", "reason": "Interrupted", "retryable": True,
                              "message": "stopped by SIGTERM at step 412; a checkpoint is saved"})
    status = derive(obs(annotated_job(active=0), [pod_dict(phase="Failed", state=terminated(130, "Error",
                                                                                             interrupted))]))
    assert status.phase is TuningJobPhase.STARTING
    assert cond(status, "Running") == ("False", "Retrying")
    assert status.message is not None
    assert status.message.startswith("the trainer was stopped and saved a checkpoint (")
    assert "stopped by SIGTERM at step 412" in status.message and status.message.endswith("a new Pod resumes from it")


def test_a_failed_push_says_where_the_model_lies() -> None:
    where = f"{WORK_DIR}/final"
    message = (f"the model is trained and saved in {where}, but pushing to my-org/m failed: HTTP 503; "
               "a new attempt only pushes it")
    job = annotated_job(failed=3, conditions=[job_condition("Failed", "BackoffLimitExceeded")])
    status = derive(obs(job, [pod_dict(phase="Failed", state=terminated(1, "Error",
                                                                        failure_message("PushFailed", message)))]))
    assert status.phase is TuningJobPhase.FAILED
    assert status.error is not None and status.error.reason == "PushFailed"
    assert where in status.error.message and "only pushes" in status.error.message
    assert status.work_dir == WORK_DIR
