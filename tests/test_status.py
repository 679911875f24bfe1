"""Status derivation: Job and Pod dicts as the API server returns them -> phase, conditions, reasons, events."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubetune.api import (
    Condition,
    Dataset,
    DatasetPhase,
    DatasetStatus,
    TrainerResult,
    TuningJob,
    TuningJobPhase,
    TuningJobStatus,
    ValidationReport,
)
from kubetune.api.progress import ProgressEvent, Stage, StageEvent, format_event, summarize
from kubetune.builders import spec_hash
from kubetune.status import (
    DatasetIssue,
    DatasetsObservation,
    RunObservation,
    dataset_events,
    derive_dataset_status,
    derive_status,
    observe_datasets,
    spec_changed_after_start,
    status_events,
)
from kubetune.status.conditions import get_condition
from kubetune.status.observe import (
    JobObservation,
    PodObservation,
    TerminatedState,
    observe_job,
    observe_pods,
    parse_termination_message,
    parse_validation_report,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TOKEN = "hf_" + "AbCdEfGh" * 4  # built, so no token-shaped literal sits in the source
JOB_NAME = "ministral-support-train"


def ts(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def job_dict(*, suspend: bool = False, active: int = 0, failed: int = 0, succeeded: int = 0,
             conditions: list[dict[str, Any]] | None = None, queue: str | None = None,
             completion: str | None = None) -> dict[str, Any]:
    labels = {"kubetune.io/tuningjob": "ministral-support"}
    if queue:
        labels["kueue.x-k8s.io/queue-name"] = queue
    status: dict[str, Any] = {"startTime": ts(0), "active": active, "failed": failed, "succeeded": succeeded}
    if conditions:
        status["conditions"] = conditions
    if completion:
        status["completionTime"] = completion
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": JOB_NAME, "namespace": "ml", "creationTimestamp": ts(0), "labels": labels,
                     "annotations": {"kubetune.io/generation": "1", "kubetune.io/spec-hash": "abc"}},
        "spec": {"suspend": suspend, "backoffLimit": 2},
        "status": status,
    }


def job_condition(type_: str, reason: str, message: str = "", minutes: float = 30) -> dict[str, Any]:
    return {"type": type_, "status": "True", "reason": reason, "message": message, "lastTransitionTime": ts(minutes)}


def pod_dict(*, phase: str = "Pending", state: dict[str, Any] | None = None, unschedulable: str | None = None,
             name: str = f"{JOB_NAME}-abcde", created: float = 0.5, gpus: str = "2") -> dict[str, Any]:
    conditions = []
    if unschedulable:
        conditions.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                           "message": unschedulable})
    status: dict[str, Any] = {"phase": phase, "conditions": conditions}
    if state is not None:
        status["containerStatuses"] = [{"name": "trainer", "ready": "running" in state, "restartCount": 0,
                                        "image": "trainer:1", "state": state}]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "ml", "creationTimestamp": ts(created),
                     "labels": {"kubetune.io/tuningjob": "ministral-support", "job-name": JOB_NAME}},
        "spec": {"containers": [{"name": "trainer", "resources": {
            "requests": {"cpu": "6", "memory": "48Gi"}, "limits": {"memory": "48Gi", "nvidia.com/gpu": gpus}}}]},
        "status": status,
    }


def running() -> dict[str, Any]:
    return {"running": {"startedAt": ts(2)}}


def terminated(exit_code: int, reason: str, message: str | None = None) -> dict[str, Any]:
    return {"terminated": {"exitCode": exit_code, "reason": reason, "message": message,
                           "startedAt": ts(2), "finishedAt": ts(29)}}


def success_message() -> str:
    return TrainerResult.model_validate({
        "status": "Succeeded",
        "model": {"repo": "my-org/ministral-support", "revision": "9f8e7d6c5b4a", "url": "https://hf.co/x"},
        "metrics": {"trainLoss": 0.91, "evalLoss": 1.02, "baseEvalLoss": 1.8, "steps": 900},
        "samples": [{"prompt": "Capital of Peru?", "reference": "Lima.", "base": "banana", "tuned": "Lima."}],
    }).model_dump_json(by_alias=True, exclude_none=True)


def failure_message(reason: str, message: str) -> str:
    return json.dumps({"status": "Failed", "reason": reason, "message": message, "retryable": False})


def progress_lines(step: int, total: int = 1000, loss: float = 1.5) -> list[str]:
    return ["loading model", format_event(ProgressEvent(step=step, total_steps=total, loss=loss, eta_seconds=600))]


def obs(job: dict[str, Any] | None = None, pods: Sequence[dict[str, Any]] = (), lines: list[str] | None = None,
        **extra: Any) -> RunObservation:
    return RunObservation(generation=extra.pop("generation", 1), job=observe_job(job), pod=observe_pods(pods),
                          log=summarize(lines) if lines is not None else None, **extra)


def derive(observation: RunObservation, previous: TuningJobStatus | None = None,
           now: datetime = T0) -> TuningJobStatus:
    return derive_status(previous, observation, now=now, log_tail_lines=5)


def condition(status: TuningJobStatus | DatasetStatus, type_: str) -> Condition:
    found = get_condition(status.conditions, type_)
    assert found is not None, f"no {type_} condition"
    return found


def cond(status: TuningJobStatus | DatasetStatus, type_: str) -> tuple[str, str]:
    found = condition(status, type_)
    return found.status.value, found.reason


UNSCHEDULABLE = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available."
OOM_LOG_TAIL = "step 40 loss 1.2\nallocating 8 GiB activation buffer\nKilled"

SCENARIOS: list[tuple[str, RunObservation, TuningJobPhase, dict[str, tuple[str, str]], str | None]] = [
    ("no job yet", obs(), TuningJobPhase.PENDING,
     {"DatasetsReady": ("True", "DatasetsReady"), "JobCreated": ("False", "NotCreated"),
      "Failed": ("False", "NotFailed")}, None),
    ("dataset missing", obs(datasets=DatasetsObservation(missing=("support-chats",))),
     TuningJobPhase.WAITING_FOR_DATA, {"DatasetsReady": ("False", "DatasetNotFound"),
                                       "JobCreated": ("False", "WaitingForData")}, None),
    ("dataset invalid", obs(datasets=DatasetsObservation(invalid=(DatasetIssue("chats", "Invalid", "12 bad rows"),))),
     TuningJobPhase.FAILED, {"DatasetsReady": ("False", "DatasetInvalid"), "Failed": ("True", "DatasetInvalid")},
     "DatasetInvalid"),
    ("dataset validating", obs(datasets=DatasetsObservation(pending=(DatasetIssue("chats", "Validating", "w"),))),
     TuningJobPhase.WAITING_FOR_DATA, {"DatasetsReady": ("False", "DatasetPending")}, None),
    ("invalid spec", obs(spec_error="output.repo: bad name"), TuningJobPhase.FAILED,
     {"Failed": ("True", "InvalidSpec"), "JobCreated": ("False", "InvalidSpec")}, "InvalidSpec"),
    ("job without pod", obs(job_dict(active=1)), TuningJobPhase.STARTING,
     {"JobCreated": ("True", "Created"), "Running": ("False", "Starting")}, None),
    ("container creating", obs(job_dict(active=1), [pod_dict(state={"waiting": {"reason": "ContainerCreating"}})]),
     TuningJobPhase.STARTING, {"Running": ("False", "Starting")}, None),
    ("unschedulable", obs(job_dict(active=1), [pod_dict(unschedulable=UNSCHEDULABLE)]), TuningJobPhase.STARTING,
     {"Running": ("False", "Unschedulable")}, None),
    ("image pull", obs(job_dict(active=1), [pod_dict(state={"waiting": {
        "reason": "ImagePullBackOff", "message": 'Back-off pulling image "trainer:nope"'}})]),
     TuningJobPhase.STARTING, {"Running": ("False", "ImagePullBackOff")}, None),
    ("secret missing", obs(job_dict(active=1), [pod_dict(state={"waiting": {
        "reason": "CreateContainerConfigError", "message": 'secret "hub-credentials" not found'}})]),
     TuningJobPhase.STARTING, {"Running": ("False", "CreateContainerConfigError")}, None),
    ("running", obs(job_dict(active=1), [pod_dict(phase="Running", state=running())], progress_lines(120)),
     TuningJobPhase.RUNNING, {"Running": ("True", "Running"), "Succeeded": ("False", "NotFinished")}, None),
    ("publishing", obs(job_dict(active=1), [pod_dict(phase="Running", state=running())],
                       [*progress_lines(1000), format_event(StageEvent(stage=Stage.PUBLISHING,
                                                                       message="pushing to my-org/m"))]),
     TuningJobPhase.PUBLISHING, {"Running": ("True", "Publishing"), "ModelPublished": ("False", "Publishing")}, None),
    ("retrying after an OOM kill", obs(job_dict(active=0, failed=1),
                                       [pod_dict(phase="Failed", state=terminated(137, "OOMKilled", OOM_LOG_TAIL))]),
     TuningJobPhase.STARTING, {"Running": ("False", "Retrying")}, None),
    ("succeeded", obs(job_dict(succeeded=1, completion=ts(30), conditions=[job_condition("Complete", "")]),
                      [pod_dict(phase="Succeeded", state=terminated(0, "Completed", success_message()))]),
     TuningJobPhase.SUCCEEDED, {"Succeeded": ("True", "Succeeded"), "ModelPublished": ("True", "Pushed"),
                                "Running": ("False", "Completed"), "Failed": ("False", "NotFailed")}, None),
    ("oom killed", obs(job_dict(failed=3, conditions=[job_condition("Failed", "BackoffLimitExceeded",
                                                                   "Job has reached the specified backoff limit")]),
                       [pod_dict(phase="Failed", state=terminated(137, "OOMKilled", OOM_LOG_TAIL))]),
     TuningJobPhase.FAILED, {"Failed": ("True", "OOMKilled"), "Succeeded": ("False", "Failed")}, "OOMKilled"),
    ("trainer auth failure", obs(job_dict(failed=1, conditions=[job_condition("Failed", "PodFailurePolicy")]),
                                 [pod_dict(phase="Failed", state=terminated(2, "Error", failure_message(
                                     "AuthFailed", "the token cannot read mistralai/Ministral-8B")))]),
     TuningJobPhase.FAILED, {"Failed": ("True", "AuthFailed")}, "AuthFailed"),
    ("push failed", obs(job_dict(failed=3, conditions=[job_condition("Failed", "BackoffLimitExceeded")]),
                        [pod_dict(phase="Failed", state=terminated(1, "Error", failure_message(
                            "PushFailed", "403 on my-org/ministral-support")))]),
     TuningJobPhase.FAILED, {"Failed": ("True", "PushFailed")}, "PushFailed"),
    ("deadline", obs(job_dict(failed=1, conditions=[job_condition(
        "Failed", "DeadlineExceeded", "Job was active longer than specified deadline")]),
        [pod_dict(phase="Failed", state=terminated(143, "Error", failure_message("Interrupted", "SIGTERM")))]),
     TuningJobPhase.FAILED, {"Failed": ("True", "DeadlineExceeded")}, "DeadlineExceeded"),
    ("failure target before failed", obs(job_dict(failed=1, conditions=[job_condition("FailureTarget",
                                                                                      "PodFailurePolicy")])),
     TuningJobPhase.FAILED, {"Failed": ("True", "PodFailurePolicy")}, "PodFailurePolicy"),
    ("plain crash", obs(job_dict(failed=3, conditions=[job_condition("Failed", "BackoffLimitExceeded")]),
                        [pod_dict(phase="Failed", state=terminated(1, "Error", "Traceback\nValueError: boom"))]),
     TuningJobPhase.FAILED, {"Failed": ("True", "BackoffLimitExceeded")}, "BackoffLimitExceeded"),
    ("suspended", obs(job_dict(suspend=True), suspend_requested=True), TuningJobPhase.SUSPENDED,
     {"Running": ("False", "Suspended"), "JobCreated": ("True", "Created")}, None),
    ("queued in kueue", obs(job_dict(suspend=True, queue="team-a")), TuningJobPhase.PENDING,
     {"Running": ("False", "Queued")}, None),
    ("suspended in kueue", obs(job_dict(suspend=True, queue="team-a"), suspend_requested=True),
     TuningJobPhase.SUSPENDED, {"Running": ("False", "Suspended")}, None),
]
SCENARIO_IDS = [s[0] for s in SCENARIOS]


@pytest.mark.parametrize(("observation", "phase", "conditions", "error"), [s[1:] for s in SCENARIOS],
                         ids=SCENARIO_IDS)
def test_phase_conditions_and_reason(observation: RunObservation, phase: TuningJobPhase,
                                     conditions: dict[str, tuple[str, str]], error: str | None) -> None:
    status = derive(observation)
    assert status.phase is phase, status.message
    for type_, expected in conditions.items():
        assert cond(status, type_) == expected
    assert (status.error.reason if status.error else None) == error
    assert status.observed_generation == 1
    assert all(c.observed_generation == 1 and c.last_transition_time == T0 for c in status.conditions)
    TuningJobStatus.model_validate(status.to_wire())  # fits the CRD's model


@pytest.mark.parametrize("observation", [s[1] for s in SCENARIOS], ids=SCENARIO_IDS)
def test_derivation_is_idempotent_and_quiet(observation: RunObservation) -> None:
    first = derive(observation)
    again = derive(observation, first, now=T0 + timedelta(minutes=5))
    assert again == first
    assert status_events(first, again) == []


def test_messages_say_what_to_do() -> None:
    by_id = {s[0]: derive(s[1]) for s in SCENARIOS}
    unschedulable = by_id["unschedulable"].message or ""
    assert "no node has 2 free nvidia.com/gpu" in unschedulable and UNSCHEDULABLE in unschedulable
    assert 'trainer:nope' in (by_id["image pull"].message or "")
    assert "hub-credentials" in (by_id["secret missing"].message or "")
    oom = by_id["oom killed"].error
    assert oom is not None and "48Gi" in oom.message
    assert "perDeviceBatchSize" in oom.message and "gradientAccumulationSteps" in oom.message and "QLoRA" in oom.message
    auth = by_id["trainer auth failure"].error
    assert auth is not None and "cannot read mistralai/Ministral-8B" in auth.message
    crash = by_id["plain crash"].error
    assert crash is not None and "exited with code 1" in crash.message and "ValueError: boom" in crash.message
    assert "activeDeadlineSeconds" in (by_id["deadline"].error.message if by_id["deadline"].error else "")
    assert "OOMKilled" in (by_id["retrying after an OOM kill"].message or "")
    assert "chats" in (by_id["dataset invalid"].message or "") and "12 bad rows" in (by_id["dataset invalid"].message
                                                                                    or "")
    assert "team-a" in (by_id["queued in kueue"].message or "")


def test_success_fills_result_metrics_and_times() -> None:
    status = derive(SCENARIOS[SCENARIO_IDS.index("succeeded")][1])
    assert status.result is not None and (status.result.repo, status.result.revision) == (
        "my-org/ministral-support", "9f8e7d6c5b4a")
    assert status.metrics is not None and status.metrics.eval_loss == 1.02
    assert [(x.prompt, x.base, x.tuned) for x in status.samples] == [("Capital of Peru?", "banana", "Lima.")]
    assert status.start_time == T0 + timedelta(minutes=2)
    assert status.completion_time == T0 + timedelta(minutes=30)
    assert status.job_name == JOB_NAME
    assert condition(status, "ModelPublished").message == "my-org/ministral-support@9f8e7d6c5b4a"


def test_running_progress_and_log_tail() -> None:
    lines = [f"line {i}" for i in range(10)] + progress_lines(250) + [f"token was {TOKEN}"]
    status = derive(obs(job_dict(active=1), [pod_dict(phase="Running", state=running())], lines))
    assert status.progress is not None
    assert (status.progress.step, status.progress.total_steps, status.progress.percent) == (250, 1000, 25)
    assert status.progress.loss == 1.5 and status.progress.updated_at == T0
    assert status.log_tail[:4] == ["line 7", "line 8", "line 9", "loading model"]  # events are not log lines
    assert TOKEN not in json.dumps(status.to_wire()) and status.log_tail[-1] == "token was ***"
    assert status.start_time == T0 + timedelta(minutes=2)
    # The same progress read later keeps its timestamp; new progress moves it.
    same = derive(obs(job_dict(active=1), [pod_dict(phase="Running", state=running())], lines), status,
                  now=T0 + timedelta(minutes=1))
    assert same.progress == status.progress
    later = derive(obs(job_dict(active=1), [pod_dict(phase="Running", state=running())], progress_lines(260)),
                   status, now=T0 + timedelta(minutes=2))
    assert later.progress is not None and later.progress.updated_at == T0 + timedelta(minutes=2)
    # No log this time (not read): progress and log tail stay.
    unread = derive(obs(job_dict(active=1), [pod_dict(phase="Running", state=running())]), later)
    assert unread.progress == later.progress and unread.log_tail == later.log_tail and unread.phase is later.phase


def test_token_in_termination_message_is_redacted() -> None:
    message = failure_message("AuthFailed", f"401 for token {TOKEN}")
    status = derive(obs(job_dict(failed=1, conditions=[job_condition("Failed", "PodFailurePolicy")]),
                        [pod_dict(phase="Failed", state=terminated(2, "Error", message))]))
    assert status.error is not None and status.error.reason == "AuthFailed"
    text = json.dumps(status.to_wire()) + json.dumps([e.message for e in status_events(None, status)])
    assert TOKEN not in text


def test_transition_times_move_only_when_status_flips() -> None:
    starting = derive(obs(job_dict(active=1)), now=T0)
    run_obs = obs(job_dict(active=1), [pod_dict(phase="Running", state=running())], progress_lines(10))
    running_ = derive(run_obs, starting, now=T0 + timedelta(minutes=3))
    assert condition(running_, "Running").last_transition_time == T0 + timedelta(minutes=3)
    assert condition(running_, "JobCreated").last_transition_time == T0
    more = derive(obs(job_dict(active=1), [pod_dict(phase="Running", state=running())], progress_lines(500)),
                  running_, now=T0 + timedelta(minutes=9))
    assert condition(more, "Running").last_transition_time == T0 + timedelta(minutes=3)
    assert more.message != running_.message  # the message may change, the transition time does not


def test_terminal_status_stays_terminal() -> None:
    done = derive(SCENARIOS[SCENARIO_IDS.index("succeeded")][1])
    complete = job_dict(succeeded=1, conditions=[job_condition("Complete", "")])
    for later in (obs(), obs(job_dict(active=1)), obs(complete)):
        assert derive(later, done, now=T0 + timedelta(hours=2)) == done
    failed = derive(SCENARIOS[SCENARIO_IDS.index("oom killed")][1])
    # The Pods were cleaned up but the Job is still there: the precise reason is kept.
    bare = obs(job_dict(failed=3, conditions=[job_condition("Failed", "BackoffLimitExceeded")]))
    kept = derive(bare, failed, now=T0 + timedelta(hours=1))
    assert kept.error == failed.error and kept.phase is TuningJobPhase.FAILED
    assert derive(obs(), failed) == failed  # the Job deleted by its TTL


def test_late_result_of_a_finished_run_is_filled_in() -> None:
    complete = job_dict(succeeded=1, completion=ts(30), conditions=[job_condition("Complete", "")])
    without_pod = derive(obs(complete))
    assert without_pod.phase is TuningJobPhase.SUCCEEDED and without_pod.result is None
    with_pod = derive(obs(complete, [pod_dict(phase="Succeeded", state=terminated(0, "Completed", success_message()))]),
                      without_pod, now=T0 + timedelta(minutes=40))
    assert with_pod.result is not None and with_pod.result.revision == "9f8e7d6c5b4a"
    assert [e.reason for e in status_events(without_pod, with_pod)] == ["Published"]


def test_fixed_spec_leaves_invalid_spec_but_a_job_loss_fails() -> None:
    invalid = derive(obs(spec_error="bad"))
    fixed = derive(obs(generation=2), invalid, now=T0 + timedelta(minutes=1))
    assert fixed.phase is TuningJobPhase.PENDING and fixed.error is None
    assert derive(obs(spec_error="bad"), invalid) == invalid
    run = derive(obs(job_dict(active=1), [pod_dict(phase="Running", state=running())], progress_lines(10)))
    lost = derive(obs(), run)
    assert lost.phase is TuningJobPhase.FAILED and lost.error is not None and lost.error.reason == "JobDeleted"
    assert "new TuningJob" in lost.error.message


def test_an_invalid_dataset_fails_the_run_until_the_data_is_fixed() -> None:
    bad = DatasetsObservation(invalid=(DatasetIssue("chats", "Invalid", "row 7: no assistant turn"),))
    failed = derive(obs(datasets=bad))
    assert failed.phase is TuningJobPhase.FAILED and failed.error is not None
    assert failed.error.reason == "DatasetInvalid" and "row 7" in failed.error.message
    assert derive(obs(datasets=bad), failed) == failed
    revalidating = DatasetsObservation(pending=(DatasetIssue("chats", "Validating", "waiting for validation"),))
    waiting = derive(obs(datasets=revalidating), failed, now=T0 + timedelta(minutes=1))
    assert waiting.phase is TuningJobPhase.WAITING_FOR_DATA and waiting.error is None
    assert derive(obs(), waiting, now=T0 + timedelta(minutes=2)).phase is TuningJobPhase.PENDING


def test_spec_change_after_start_is_rejected_once() -> None:
    base = obs(job_dict(active=1), [pod_dict(phase="Running", state=running())], progress_lines(10))
    run = derive(base)
    changed = derive(replace(base, generation=2, spec_changed_after_start=True), run, now=T0 + timedelta(minutes=1))
    assert cond(changed, "SpecChangeRejected") == ("True", "SpecFrozen")
    assert "new TuningJob" in condition(changed, "SpecChangeRejected").message
    assert changed.phase is TuningJobPhase.RUNNING and changed.observed_generation == 2
    assert [e.reason for e in status_events(run, changed)] == ["SpecChangeRejected"]
    again = derive(replace(base, generation=2, spec_changed_after_start=True), changed, now=T0 + timedelta(minutes=2))
    assert again == changed and status_events(changed, again) == []
    assert get_condition(run.conditions, "SpecChangeRejected") is None


def test_spec_change_is_noticed_from_the_job_annotation() -> None:
    tj = TuningJob.model_validate({
        "metadata": {"name": "ministral-support"},
        "spec": {"baseModel": {"scratch": {}}, "datasets": {"train": [{"dataset": "chats"}]},
                 "output": {"repo": "o/m"}}})
    job = job_dict(active=1)
    job["metadata"]["annotations"]["kubetune.io/spec-hash"] = spec_hash(tj.spec)
    assert not spec_changed_after_start(observe_job(job), tj.spec)
    assert not spec_changed_after_start(observe_job(job), tj.spec.model_copy(update={"suspend": True}))
    edited = tj.spec.model_copy(update={"output": tj.spec.output.model_copy(update={"repo": "o/other"})})
    assert spec_changed_after_start(observe_job(job), edited)
    assert not spec_changed_after_start(None, edited)
    # A hash the caller keeps is the one compared, and it is asked for only when a Job has one.
    asked: list[str] = []
    kept = lambda: asked.append("asked") or spec_hash(edited)  # noqa: E731
    assert spec_changed_after_start(observe_job(job), edited, kept)
    assert not spec_changed_after_start(observe_job(job), edited, lambda: spec_hash(tj.spec))
    assert not spec_changed_after_start(None, edited, kept) and asked == ["asked"]


def test_events_tell_the_story_of_a_run() -> None:
    running_pod = [pod_dict(phase="Running", state=running())]
    story = [
        obs(datasets=DatasetsObservation(pending=(DatasetIssue("chats", "Validating", "waiting for validation"),))),
        obs(),
        obs(job_dict(active=1), [pod_dict(unschedulable=UNSCHEDULABLE)]),
        obs(job_dict(active=1), running_pod, progress_lines(5)),
        obs(job_dict(active=1), running_pod, progress_lines(120)),
        obs(job_dict(active=1), running_pod, progress_lines(180)),
        obs(job_dict(active=1), running_pod, progress_lines(350)),
        obs(job_dict(suspend=True), suspend_requested=True),
        obs(job_dict(active=1), running_pod, progress_lines(360)),
        obs(job_dict(active=1), running_pod, [*progress_lines(1000), format_event(StageEvent(
            stage=Stage.PUBLISHING, message="pushing to my-org/ministral-support"))]),
        SCENARIOS[SCENARIO_IDS.index("succeeded")][1],
    ]
    status: TuningJobStatus | None = None
    reasons: list[list[str]] = []
    for minute, step in enumerate(story):
        new = derive(step, status, now=T0 + timedelta(minutes=minute))
        reasons.append([e.reason for e in status_events(status, new)])
        status = new
    assert reasons == [
        ["WaitingForData"],
        [],
        ["JobCreated", "Unschedulable"],
        ["Started"],
        ["Progress"],  # 12%
        [],  # 18%: still in the 10s
        ["Progress"],  # 35%: one event for crossing 20 and 30
        ["Suspended"],
        ["Resumed"],
        ["Publishing"],
        ["Published", "Succeeded"],
    ]


def test_milestones_at_most_every_ten_percent() -> None:
    status = derive(obs(job_dict(active=1), [pod_dict(phase="Running", state=running())], progress_lines(0)))
    milestones: list[str] = []
    for step in range(1, 1000, 7):
        new = derive(obs(job_dict(active=1), [pod_dict(phase="Running", state=running())], progress_lines(step)),
                     status)
        milestones += [e.message for e in status_events(status, new) if e.reason == "Progress"]
        status = new
    assert [m.split("%")[0] for m in milestones] == [str(p) for p in range(10, 100, 10)]


def test_failure_events_are_warnings() -> None:
    failed = derive(SCENARIOS[SCENARIO_IDS.index("oom killed")][1])
    events = status_events(None, failed)
    fail = [e for e in events if e.reason == "Failed"]
    assert len(fail) == 1 and fail[0].type == "Warning" and fail[0].message.startswith("OOMKilled:")


def test_local_mode_observations_without_kubernetes_dicts() -> None:
    """The local mode builds observations directly from a process; derivation treats them alike."""
    job = JobObservation(name="local", active=1)
    pod = PodObservation(name="pid-4242", phase="Running", running_since=T0)
    status = derive(RunObservation(generation=1, job=job, pod=pod, log=summarize(progress_lines(500))))
    assert status.phase is TuningJobPhase.RUNNING and status.progress is not None and status.progress.percent == 50
    done = derive(RunObservation(generation=1, job=replace(job, active=0, succeeded=1, complete=True),
                                 pod=replace(pod, terminated=TerminatedState(exit_code=0, message=success_message(),
                                                                             finished_at=T0))), status)
    assert done.phase is TuningJobPhase.SUCCEEDED and done.progress is not None and done.progress.percent == 100


# --- observations -----------------------------------------------------------------------------------------------

def test_observe_pods_takes_the_newest_pod() -> None:
    old = pod_dict(phase="Failed", state=terminated(137, "OOMKilled"), name="a-old", created=1)
    new = pod_dict(phase="Running", state=running(), name="b-new", created=5)
    seen = observe_pods([new, old])
    assert seen is not None and seen.name == "b-new" and seen.running
    assert seen.accelerators == (("nvidia.com/gpu", "2"),) and seen.memory_limit == "48Gi"
    assert observe_pods([]) is None and observe_job(None) is None


def test_observe_job_reads_annotations_and_conditions() -> None:
    seen = observe_job(job_dict(queue="q", conditions=[job_condition("Failed", "DeadlineExceeded", "late", 7)]))
    assert seen is not None
    assert (seen.queue_name, seen.spec_hash) == ("q", "abc")
    assert seen.failure_reason == "DeadlineExceeded" and seen.failed_at == T0 + timedelta(minutes=7)
    assert not seen.complete


def test_parse_termination_message() -> None:
    ok = parse_termination_message(success_message())
    assert ok is not None and ok.status == "Succeeded" and ok.model is not None
    failed = parse_termination_message(failure_message("PushFailed", "x" * 5000))
    assert failed is not None and failed.reason is not None and failed.reason.value == "PushFailed"
    assert failed.message is not None and len(failed.message) <= 2048
    # The kubelet cuts a termination message at 4096 bytes: the JSON no longer parses.
    too_long = json.dumps({"status": "Succeeded", "metrics": {"trainLoss": 1.0}, "pad": "y" * 5000})[:4096]
    assert parse_termination_message(too_long) is None
    # FallbackToLogsOnError: a log tail, possibly ending with the result line.
    assert parse_termination_message("Traceback (most recent call last):\n  File x\nKeyError: 'a'") is None
    tail = "epoch 3 done\n" + success_message() + "\n"
    assert parse_termination_message(tail) == ok
    for garbage in (None, "", "   ", "{", "[1, 2]", '{"status": "Maybe"}', "\x00\xff binary", '"just a string"'):
        assert parse_termination_message(garbage) is None


def test_a_newer_trainers_result_is_read_without_the_fields_this_operator_does_not_know() -> None:
    newer = json.loads(success_message())
    newer["energyKwh"] = 3.2  # a top-level field from a later minor version of the contract
    newer["metrics"]["perplexity"] = 2.7
    newer["model"]["shards"] = ["a", "b"]
    found = parse_termination_message(json.dumps(newer))
    assert found == parse_termination_message(success_message())
    # A field this operator knows, with a value it cannot read, still makes the message unreadable.
    assert parse_termination_message(json.dumps({**newer, "status": "Maybe"})) is None


def test_parse_validation_report() -> None:
    report = ValidationReport(outcome="Ready", rows=10, valid_rows=10)
    assert parse_validation_report(report.model_dump_json(by_alias=True)) == report
    assert parse_validation_report(success_message()) is None  # a trainer result is not a report
    assert parse_validation_report("garbage") is None


def test_observe_datasets() -> None:
    def ds(name: str, generation: int, status: dict[str, Any] | None) -> Dataset:
        body: dict[str, Any] = {"metadata": {"name": name, "generation": generation},
                                "spec": {"source": {"url": {"url": "https://x.test/a.jsonl"}}}}
        if status is not None:
            body["status"] = status
        return Dataset.model_validate(body)

    found = {
        "ready": ds("ready", 2, {"phase": "Ready", "observedGeneration": 2}),
        "stale": ds("stale", 3, {"phase": "Ready", "observedGeneration": 2}),
        "new": ds("new", 1, None),
        "bad": ds("bad", 1, {"phase": "Invalid", "reason": "InvalidRows", "message": "3 rows lack output",
                             "observedGeneration": 1}),
    }
    seen = observe_datasets(["ready", "stale", "new", "bad", "gone", "ready"], found)
    assert seen.missing == ("gone",)
    assert [i.name for i in seen.pending] == ["stale", "new"]
    assert seen.invalid == (DatasetIssue("bad", "Invalid", "3 rows lack output"),)
    assert not seen.ready and observe_datasets(["ready"], found).ready


# --- Dataset status ---------------------------------------------------------------------------------------------

def validator_pod(state: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    pod = pod_dict(state=state, **kw)
    pod["spec"]["containers"][0]["name"] = "validator"
    pod["spec"]["containers"][0]["resources"] = {"limits": {"memory": "2Gi"}}
    if state is not None:
        pod["status"]["containerStatuses"][0]["name"] = "validator"
    return pod


READY_REPORT = ValidationReport(outcome="Ready", rows=120, valid_rows=120, detected_format="messages",
                                revision="abc123", preview=["{...}"]).model_dump_json(by_alias=True)
INVALID_REPORT = ValidationReport(outcome="Invalid", rows=120, valid_rows=117, error_count=3, errors=[
    {"row": 7, "field": "messages", "message": "no assistant turn"}]).model_dump_json(by_alias=True)

DATASET_SCENARIOS: list[tuple[str, dict[str, Any] | None, list[dict[str, Any]], DatasetPhase, str, str | None]] = [
    ("no job", None, [], DatasetPhase.PENDING, "Pending", None),
    ("running", job_dict(active=1), [validator_pod(running(), phase="Running")], DatasetPhase.VALIDATING,
     "Validating", None),
    ("image pull", job_dict(active=1), [validator_pod({"waiting": {"reason": "ErrImagePull", "message": "nope"}})],
     DatasetPhase.VALIDATING, "ErrImagePull", None),
    ("ready", job_dict(succeeded=1, conditions=[job_condition("Complete", "")]),
     [validator_pod(terminated(0, "Completed", READY_REPORT), phase="Succeeded")], DatasetPhase.READY, "Valid", None),
    ("invalid", job_dict(failed=1, conditions=[job_condition("Failed", "PodFailurePolicy")]),
     [validator_pod(terminated(2, "Error", INVALID_REPORT), phase="Failed")], DatasetPhase.INVALID, "InvalidRows",
     "InvalidRows"),
    ("oom", job_dict(failed=2, conditions=[job_condition("Failed", "BackoffLimitExceeded")]),
     [validator_pod(terminated(137, "OOMKilled"), phase="Failed")], DatasetPhase.FAILED, "OOMKilled", "OOMKilled"),
    ("no report", job_dict(succeeded=1, conditions=[job_condition("Complete", "")]),
     [validator_pod(terminated(0, "Completed", "done"), phase="Succeeded")], DatasetPhase.FAILED, "ValidationFailed",
     "ValidationFailed"),
]


def derive_ds(job: dict[str, Any] | None, pods: list[dict[str, Any]], previous: DatasetStatus | None = None,
              generation: int = 1, now: datetime = T0) -> DatasetStatus:
    return derive_dataset_status(previous, generation=generation, source="hf:my-org/chats",
                                 job_name=f"chats-validate-g{generation}", job=observe_job(job),
                                 pod=observe_pods(pods), now=now)


@pytest.mark.parametrize(("job", "pods", "phase", "ready_reason", "reason"), [s[1:] for s in DATASET_SCENARIOS],
                         ids=[s[0] for s in DATASET_SCENARIOS])
def test_dataset_status(job: dict[str, Any] | None, pods: list[dict[str, Any]], phase: DatasetPhase,
                        ready_reason: str, reason: str | None) -> None:
    status = derive_ds(job, pods)
    assert status.phase is phase, status.message
    assert cond(status, "Ready") == ("True" if phase is DatasetPhase.READY else "False", ready_reason)
    assert status.reason == reason
    assert derive_ds(job, pods, status, now=T0 + timedelta(hours=1)) == status
    assert dataset_events(status, derive_ds(job, pods, status)) == []
    DatasetStatus.model_validate(status.to_wire())


def test_dataset_findings_and_events() -> None:
    validating = derive_ds(job_dict(active=1), [validator_pod(running(), phase="Running")])
    assert [e.reason for e in dataset_events(None, validating)] == ["Validating"]
    ready = derive_ds(job_dict(succeeded=1, conditions=[job_condition("Complete", "")]),
                      [validator_pod(terminated(0, "Completed", READY_REPORT), phase="Succeeded")], validating)
    assert (ready.rows, ready.valid_rows, ready.revision, ready.detected_format) == (120, 120, "abc123", "messages")
    assert ready.validated_at == T0 + timedelta(minutes=29)
    events = dataset_events(validating, ready)
    assert [(e.type, e.reason) for e in events] == [("Normal", "Validated")] and "120 of 120" in events[0].message
    invalid = derive_ds(job_dict(failed=1, conditions=[job_condition("Failed", "PodFailurePolicy")]),
                        [validator_pod(terminated(2, "Error", INVALID_REPORT), phase="Failed")], validating)
    assert invalid.errors[0].row == 7 and invalid.error_count == 3 and "no assistant turn" in (invalid.message or "")
    assert [(e.type, e.reason) for e in dataset_events(validating, invalid)] == [("Warning", "Invalid")]
    # A new generation starts over: the old findings go, a new Validating event comes.
    regen = derive_ds(job_dict(active=1), [validator_pod(running(), phase="Running")], ready, generation=2)
    assert regen.phase is DatasetPhase.VALIDATING and regen.rows is None and regen.observed_generation == 2
    assert [e.reason for e in dataset_events(ready, regen)] == ["Validating"]
    # The previous generation's Ready condition flipped: its transition time moves.
    assert condition(regen, "Ready").last_transition_time == T0


def test_dataset_report_from_local_mode() -> None:
    report = ValidationReport(outcome="Failed", reason="Unreachable", message="connection refused")
    status = derive_dataset_status(None, generation=None, source="https://x", job_name="local",
                                   job=None, pod=None, report=report, now=T0)
    assert status.phase is DatasetPhase.FAILED and status.reason == "Unreachable"
    assert status.validated_at == T0
