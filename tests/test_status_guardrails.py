"""Pure status parts of the guardrails: the preflight's verdict, status.pinned and status.usage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kubetune.api import Dataset, TrainingMetrics, TrainingProgress, TuningJob, TuningJobPhase
from kubetune.api.contract import PreflightReport
from kubetune.api.guardrails import PinnedDataset, PinnedRevisions, Usage
from kubetune.status.guardrails import (
    PreflightObservation,
    PreflightStage,
    derive_pinned,
    derive_usage,
    pinned_datasets,
    preflight_verdict,
)
from kubetune.status.observe import JobObservation, PodObservation, PodTimes, TerminatedState, pod_times

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def report(outcome: str = "Passed", issues: list[dict[str, Any]] | None = None, **extra: Any) -> str:
    return PreflightReport.model_validate({"outcome": outcome, "issues": issues or [], **extra}).model_dump_json(
        by_alias=True, exclude_none=True)


def observed(message: str | None, *, failure: str | None = None) -> PreflightObservation:
    pod = PodObservation(name="p", terminated=TerminatedState(exit_code=0, message=message)) \
        if message is not None else PodObservation(name="p", phase="Running", running_since=T0)
    return PreflightObservation(job=JobObservation(name="tj-preflight", failure_reason=failure), pod=pod)


def test_no_job_yet_is_not_started_and_a_running_one_is_checking() -> None:
    assert preflight_verdict(PreflightObservation()).stage is PreflightStage.NOT_STARTED
    checking = preflight_verdict(observed(None))
    assert checking.stage is PreflightStage.CHECKING and "before a GPU is used" in checking.message


def test_a_passed_report_passes_and_a_wont_fit_warning_is_its_reason() -> None:
    clean = preflight_verdict(observed(report(checked=["token", "baseModel"], baseModelRevision="abc")))
    assert (clean.stage, clean.reason, clean.message) == (PreflightStage.PASSED, "Passed", "checked token, baseModel")
    assert clean.failure is None and clean.report is not None and clean.report.base_model_revision == "abc"
    warned = preflight_verdict(observed(report(issues=[
        {"reason": "WontFit", "severity": "Warning", "message": "141.8 GiB per GPU; one GPU has 80.0 GiB"}])))
    assert warned.stage is PreflightStage.PASSED and warned.reason == "WontFit"
    assert "warning: WontFit: 141.8 GiB per GPU" in warned.message


def test_a_failed_report_fails_with_the_first_errors_reason_and_every_message() -> None:
    verdict = preflight_verdict(observed(report("Failed", retryable=False, issues=[
        {"reason": "ModelGated", "severity": "Error", "message": "accept its license at https://hub/x"},
        {"reason": "OutputNotWritable", "severity": "Error", "message": "it is a read token"},
        {"reason": "WontFit", "severity": "Warning", "message": "too big"}])))
    assert verdict.stage is PreflightStage.FAILED and verdict.failure is not None
    assert verdict.failure.reason == "ModelGated"
    assert verdict.failure.message == "preflight: accept its license at https://hub/x; it is a read token"


def test_a_network_failure_is_retried_by_the_job_until_the_job_gives_up() -> None:
    flaky = report("Failed", retryable=True, issues=[
        {"reason": "Unreachable", "severity": "Error", "message": "cannot reach the Hub"}])
    retrying = preflight_verdict(observed(flaky))
    assert retrying.stage is PreflightStage.CHECKING and "retrying after: cannot reach the Hub" in retrying.message
    given_up = preflight_verdict(observed(flaky, failure="BackoffLimitExceeded"))
    assert given_up.stage is PreflightStage.FAILED and given_up.reason == "Unreachable"


def test_a_job_that_failed_without_a_report_says_where_to_look() -> None:
    verdict = preflight_verdict(PreflightObservation(
        job=JobObservation(name="tj-preflight", failure_reason="DeadlineExceeded"),
        pod=PodObservation(name="p", terminated=TerminatedState(exit_code=137, message="Killed"))))
    assert verdict.stage is PreflightStage.FAILED and verdict.reason == "PreflightFailed"
    assert "DeadlineExceeded" in verdict.message and "kubectl logs job/tj-preflight" in verdict.message


def test_a_preflight_pod_that_cannot_start_says_why() -> None:
    verdict = preflight_verdict(PreflightObservation(
        job=JobObservation(name="tj-preflight"),
        pod=PodObservation(name="p", phase="Pending", waiting_reason="ImagePullBackOff",
                           waiting_message="Back-off pulling image")))
    assert verdict.stage is PreflightStage.CHECKING and verdict.reason == "ImagePullBackOff"


def test_pinned_datasets_name_each_dataset_with_its_revision() -> None:
    tj = TuningJob.model_validate({"metadata": {"name": "tj"}, "spec": {
        "baseModel": {"repo": "org/model"}, "output": {"repo": "org/out"},
        "datasets": {"train": [{"dataset": "alpaca"}, {"source": {"hf": {"repo": "org/rows", "revision": "v2"}}},
                               {"source": {"pvc": {"claimName": "data", "path": "x.jsonl"}}}],
                     "validation": [{"dataset": "alpaca"}, {"dataset": "missing"}]}}})
    alpaca = Dataset.model_validate({"metadata": {"name": "alpaca"}, "spec": {"source": {"hf": {"repo": "t/a"}}},
                                     "status": {"revision": "d" * 40}})
    preflight = PreflightReport.model_validate({"outcome": "Passed", "datasets": [
        {"name": "hf:org/rows@v2", "revision": "e" * 40}]})
    pins = pinned_datasets(tj.spec, {"alpaca": alpaca}, preflight)
    assert [(p.name, p.revision) for p in pins] == [
        ("alpaca", "d" * 40), ("hf:org/rows@v2", "e" * 40), ("pvc:data/x.jsonl", None), ("missing", None)]


def test_the_first_pin_recorded_stays() -> None:
    first = derive_pinned(None, base_model_revision="a" * 40, datasets=[PinnedDataset(name="d", revision="1")],
                          image_id=None)
    assert first == PinnedRevisions(base_model_revision="a" * 40, datasets=[PinnedDataset(name="d", revision="1")])
    later = derive_pinned(first, base_model_revision="b" * 40, datasets=[PinnedDataset(name="d", revision="2")],
                          image_id="registry/trainer@sha256:" + "f" * 64)
    assert later is not None and later.base_model_revision == "a" * 40 and later.datasets[0].revision == "1"
    assert later.trainer_image == "registry/trainer@sha256:" + "f" * 64
    assert derive_pinned(None, base_model_revision=None, datasets=[], image_id=None) is None


def pod(name: str, *, started: datetime, finished: datetime | None = None, gpus: str = "2",
        image_id: str = "docker.io/kubetune/trainer@sha256:" + "a" * 64) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {"startedAt": started.isoformat()}} if finished is None else {
        "terminated": {"exitCode": 1, "startedAt": started.isoformat(), "finishedAt": finished.isoformat()}}
    return {"metadata": {"name": name, "creationTimestamp": started.isoformat()},
            "spec": {"containers": [{"name": "trainer", "resources": {"limits": {"nvidia.com/gpu": gpus}}}]},
            "status": {"containerStatuses": [{"name": "trainer", "state": state, "imageID": image_id}]}}


def test_pod_times_sum_every_attempt_and_the_pod_tells_its_image_digest() -> None:
    pods = [pod("a", started=T0, finished=T0 + timedelta(minutes=10)),
            pod("b", started=T0 + timedelta(minutes=11))]
    times = pod_times(pods, "trainer")
    assert times == PodTimes(finished_seconds=600.0, running_since=T0 + timedelta(minutes=11), gpus=2)
    from kubetune.status.observe import observe_pods

    newest = observe_pods(pods, "trainer")
    assert newest is not None and newest.image_id == "docker.io/kubetune/trainer@sha256:" + "a" * 64


def test_usage_counts_gpu_seconds_up_to_the_last_progress_read_and_never_goes_down() -> None:
    times = PodTimes(finished_seconds=600.0, running_since=T0, gpus=2)
    progress = TrainingProgress(step=10, tokens_per_second=1500.0)
    running = derive_usage(None, times, at=T0 + timedelta(seconds=300), progress=progress, tokens=450_000,
                           metrics=None)
    assert running == Usage(wall_seconds=900.0, gpu_seconds=1800.0, trained_tokens=450_000, tokens_per_second=1500.0)
    assert derive_usage(running, times, at=T0 + timedelta(seconds=300), progress=progress, tokens=450_000,
                        metrics=None) == running, "the same observation, the same usage"

    done = derive_usage(running, PodTimes(finished_seconds=1500.0, gpus=2), at=None, progress=progress,
                        tokens=None, metrics=TrainingMetrics(trained_tokens=1_200_000, runtime_seconds=800.0))
    assert done == Usage(wall_seconds=1500.0, gpu_seconds=3000.0, trained_tokens=1_200_000, tokens_per_second=1500.0)
    # Pods deleted after the run (TTL): nothing left to time, the figures stay.
    assert derive_usage(done, PodTimes(), at=None, progress=progress, tokens=None, metrics=None) == done


def test_a_cpu_run_has_wall_time_but_no_gpu_seconds() -> None:
    usage = derive_usage(None, PodTimes(finished_seconds=42.0), at=None, progress=None, tokens=None, metrics=None)
    assert usage == Usage(wall_seconds=42.0)
    assert derive_usage(None, PodTimes(), at=None, progress=None, tokens=None, metrics=None) is None


def test_usage_metrics_count_growth_once_and_a_restart_sets_a_baseline() -> None:
    from kubetune.metrics import OperatorMetrics

    metrics = OperatorMetrics()

    def value(metric: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(metric, labels)

    metrics.observe_usage("ml", "new-run", None)  # pending: nothing used yet
    metrics.observe_usage("ml", "new-run", Usage(gpu_seconds=100.0, trained_tokens=1000))
    metrics.observe_usage("ml", "new-run", Usage(gpu_seconds=250.0, trained_tokens=3000))
    metrics.observe_usage("ml", "new-run", Usage(gpu_seconds=250.0, trained_tokens=3000))
    assert value("kubetune_gpu_seconds_total", namespace="ml") == 250.0
    assert value("kubetune_trained_tokens_total", namespace="ml") == 3000.0
    assert value("kubetune_tuningjob_gpu_seconds", namespace="ml", name="new-run") == 250.0

    # A run first seen with usage (this operator started while it ran): only its growth counts.
    metrics.observe_usage("ml", "old-run", Usage(gpu_seconds=5000.0))
    metrics.observe_usage("ml", "old-run", Usage(gpu_seconds=5060.0))
    assert value("kubetune_gpu_seconds_total", namespace="ml") == 310.0
    metrics.forget_tuningjob("ml", "old-run")
    assert value("kubetune_tuningjob_gpu_seconds", namespace="ml", name="old-run") is None
    assert value("kubetune_gpu_seconds_total", namespace="ml") == 310.0, "a deleted run's usage stays counted"


def test_events_for_a_passed_preflight_a_wont_fit_warning_and_a_lowered_batch() -> None:
    from kubetune.api import Condition, TuningJobStatus
    from kubetune.status.events import status_events

    def guardrail_events(before: TuningJobStatus, current: TuningJobStatus) -> list[Any]:
        return [e for e in status_events(before, current) if e.reason in ("PreflightPassed", "WontFit",
                                                                             "BatchReduced")]

    def status(preflight: tuple[str, str] | None = None, batch: tuple[int, int] | None = None) -> TuningJobStatus:
        conditions = [Condition(type="PreflightPassed", status=preflight[0], reason=preflight[1], message="m")] \
            if preflight else []
        progress = TrainingProgress(per_device_batch_size=batch[0], gradient_accumulation_steps=batch[1]) \
            if batch else None
        return TuningJobStatus(conditions=conditions, progress=progress)

    checking = status(("Unknown", "Checking"))
    assert guardrail_events(checking, checking) == []
    [passed] = guardrail_events(checking, status(("True", "Passed")))
    assert (passed.type, passed.reason) == ("Normal", "PreflightPassed")
    [wont_fit] = guardrail_events(checking, status(("True", "WontFit")))
    assert (wont_fit.type, wont_fit.reason) == ("Warning", "WontFit")
    assert guardrail_events(status(("True", "Passed")), status(("True", "Passed"))) == [], "once, not per pass"

    [lowered] = guardrail_events(status(batch=(8, 1)), status(batch=(4, 2)))
    assert (lowered.type, lowered.reason) == ("Warning", "BatchReduced")
    assert "perDeviceBatchSize 8 -> 4, gradientAccumulationSteps 1 -> 2" in lowered.message
    assert guardrail_events(status(batch=(4, 2)), status(batch=(4, 2))) == []


def test_a_run_through_preflight_training_and_its_end_in_status() -> None:
    from kubetune.api import TuningJobPhase
    from kubetune.api.progress import summarize
    from kubetune.status import RunObservation, derive_status
    from kubetune.status.conditions import get_condition
    from kubetune.status.events import status_events

    pins = (PinnedDataset(name="alpaca", revision="d" * 40),)

    def derive(previous: Any, now: datetime, **obs: Any) -> Any:
        return derive_status(previous, RunObservation(generation=1, pinned_datasets=pins, **obs), now=now,
                             log_tail_lines=5)

    checking = derive(None, T0, preflight=observed(None))
    assert checking.phase is TuningJobPhase.PENDING and checking.job_name is None
    condition = get_condition(checking.conditions, "PreflightPassed")
    assert condition is not None and (condition.status, condition.reason) == ("Unknown", "Checking")
    assert checking.pinned is None, "nothing is pinned before the run starts"

    passed = derive(checking, T0, preflight=observed(report(baseModelRevision="a" * 40, checked=["baseModel"])))
    assert passed.phase is TuningJobPhase.PENDING and passed.message == "the training Job is being created"
    assert passed.pinned == PinnedRevisions(base_model_revision="a" * 40, datasets=list(pins))
    assert [e.reason for e in status_events(checking, passed)] == ["PreflightPassed"]

    image = "registry.local/trainer@sha256:" + "f" * 64
    log = summarize(['##kubetune {"event":"progress","step":5,"totalSteps":10,"loss":1.5,"tokens":4000,'
                     '"tokensPerSecond":800.0,"perDeviceBatchSize":4,"gradientAccumulationSteps":2}'])
    running = derive(passed, T0 + timedelta(seconds=60), job=JobObservation(name="tj-train", active=1),
                     pod=PodObservation(name="p", running_since=T0, image_id=image), log=log,
                     pod_times=PodTimes(running_since=T0, gpus=1))
    assert running.phase is TuningJobPhase.RUNNING
    kept = get_condition(running.conditions, "PreflightPassed")
    assert kept is not None and kept.status == "True", "the verdict stands once the Job exists"
    assert running.pinned is not None and running.pinned.trainer_image == image
    assert running.pinned.base_model_revision == "a" * 40
    assert running.usage == Usage(wall_seconds=60.0, gpu_seconds=60.0, trained_tokens=4000, tokens_per_second=800.0)
    assert running.progress is not None and running.progress.per_device_batch_size == 4


def test_a_failed_preflight_fails_the_run_without_a_job() -> None:
    from kubetune.api import TuningJobPhase
    from kubetune.status import RunObservation, derive_status
    from kubetune.status.conditions import get_condition, is_true
    from kubetune.status.events import status_events

    failed = derive_status(None, RunObservation(generation=1, preflight=observed(report("Failed", retryable=False,
        issues=[{"reason": "OutputNotWritable", "severity": "Error", "message": "it is a read token"}]))),
        now=T0, log_tail_lines=5)
    assert failed.phase is TuningJobPhase.FAILED and failed.job_name is None
    assert failed.error is not None and failed.error.reason == "OutputNotWritable"
    assert failed.error.message == "preflight: it is a read token"
    condition = get_condition(failed.conditions, "PreflightPassed")
    assert condition is not None and (condition.status, condition.reason) == ("False", "OutputNotWritable")
    assert not is_true(failed.conditions, "JobCreated")
    assert [(e.type, e.reason) for e in status_events(None, failed)] == [("Warning", "Failed")]
    again = derive_status(failed, RunObservation(generation=2), now=T0, log_tail_lines=5)
    assert again.phase is TuningJobPhase.FAILED, "a new generation does not re-run a failed preflight"


def test_a_preflight_job_that_completed_without_a_report_fails() -> None:
    verdict = preflight_verdict(PreflightObservation(
        job=JobObservation(name="tj-preflight", complete=True),
        pod=PodObservation(name="p", terminated=TerminatedState(exit_code=0, message="usage: kubetune-trainer"))))
    assert verdict.stage is PreflightStage.FAILED and verdict.reason == "PreflightFailed"
    assert "ended without a report" in verdict.message and "spec.guardrails.preflight: false" in verdict.message


def indexed_pod(index: int, *, started: datetime, finished: datetime | None = None, gpus: str = "8") -> dict[str, Any]:
    found = pod(f"tj-train-{index}-x", started=started, finished=finished, gpus=gpus,
                image_id=f"registry/trainer@sha256:{index}" + "0" * 63)
    found["metadata"]["annotations"] = {"batch.kubernetes.io/job-completion-index": str(index)}
    return found


def test_a_multi_node_run_counts_gpus_per_pod_times_pods_times_run_time() -> None:
    # 2 nodes x 8 GPUs for 10 minutes (Pod 1 started 5 s later), then a retry of both Pods running.
    first = [indexed_pod(0, started=T0, finished=T0 + timedelta(minutes=10)),
             indexed_pod(1, started=T0 + timedelta(seconds=5), finished=T0 + timedelta(minutes=10))]
    times = pod_times(first, "trainer")
    assert times == PodTimes(finished_seconds=600.0, gpus=8, pods=2), "side by side, the run time counts once"
    usage = derive_usage(None, times, at=None, progress=None, tokens=None, metrics=None)
    assert usage == Usage(wall_seconds=600.0, gpu_seconds=8 * 2 * 600.0)

    retry = [indexed_pod(0, started=T0 + timedelta(minutes=11)), indexed_pod(1, started=T0 + timedelta(minutes=11))]
    times = pod_times(first + retry, "trainer")
    assert times == PodTimes(finished_seconds=600.0, running_since=T0 + timedelta(minutes=11), gpus=8, pods=2)
    usage = derive_usage(usage, times, at=T0 + timedelta(minutes=12), progress=None, tokens=None, metrics=None)
    assert usage == Usage(wall_seconds=660.0, gpu_seconds=8 * 2 * 660.0)

    from kubetune.status.observe import observe_pods

    pod_zero = observe_pods(first + retry, "trainer")
    assert pod_zero is not None and pod_zero.image_id == "registry/trainer@sha256:0" + "0" * 63, \
        "status.pinned takes Pod 0's image"


def test_effective_batch_in_status_is_the_batch_in_use_after_an_out_of_memory_retry() -> None:
    from kubetune.api.progress import summarize
    from kubetune.status import RunObservation, derive_status

    def line(per_device: int, accumulation: int) -> Any:
        return summarize(['##kubetune {"event":"progress","step":5,"totalSteps":10,"loss":1.5,'
                          f'"perDeviceBatchSize":{per_device},"gradientAccumulationSteps":{accumulation}}}'])

    running = PodObservation(name="p", running_since=T0)
    job = JobObservation(name="tj-train", active=1)
    # The spec: perDeviceBatchSize 6 on 4 GPUs, no accumulation.
    before = derive_status(None, RunObservation(generation=1, job=job, pod=running, world_size=4,
                                                effective_batch_size=24), now=T0, log_tail_lines=5)
    assert (before.world_size, before.effective_batch_size) == (4, 24)
    halved = derive_status(before, RunObservation(generation=1, job=job, pod=running, log=line(3, 2), world_size=4,
                                                  effective_batch_size=24), now=T0, log_tail_lines=5)
    assert halved.effective_batch_size == 24, "half the batch, twice the accumulation: the same by design"
    odd = derive_status(halved, RunObservation(generation=1, job=job, pod=running, log=line(1, 4), world_size=4,
                                               effective_batch_size=24), now=T0, log_tail_lines=5)
    assert odd.effective_batch_size == 16, "3 halved is 1: status says what really trains"


def test_a_multi_node_failure_is_told_by_the_node_that_caused_it() -> None:
    from kubetune.api.contract import PEER_FAILURE, FailureReason, TrainerResult
    from kubetune.status import RunObservation, derive_status
    from kubetune.status.observe import failure_elsewhere, observe_pods

    def ended(index: int, result: TrainerResult | None, exit_code: int) -> dict[str, Any]:
        found = indexed_pod(index, started=T0, finished=T0 + timedelta(minutes=3))
        terminated = found["status"]["containerStatuses"][0]["state"]["terminated"]
        terminated.update(exitCode=exit_code, message=result.model_dump_json(by_alias=True) if result else "Killed")
        return found

    # Node 1's rank ran out of GPU memory; node 0's all-reduce broke under it.
    peer = TrainerResult(status="Failed", reason=FailureReason.TRAINING_FAILED, retryable=True,
                         message=f"{PEER_FAILURE} (see its log): Connection closed by peer")
    oom = TrainerResult(status="Failed", reason=FailureReason.OUT_OF_MEMORY, retryable=False,
                        message="the GPU ran out of memory at perDeviceBatchSize 8; set perDeviceBatchSize 4 and "
                                "gradientAccumulationSteps 2")
    pods = [ended(0, peer, 1), ended(1, oom, 2)]
    cause = failure_elsewhere(pods, "trainer")
    assert cause is not None and cause.node == "1" and cause.result == oom
    job = JobObservation(name="tj-train", failed=1, failure_reason="PodFailurePolicy",
                         failure_message="Container trainer for pod default/tj-train-1-x failed with exit code 2")
    status = derive_status(None, RunObservation(generation=1, job=job, pod=observe_pods(pods, "trainer"),
                                                failure_elsewhere=cause), now=T0, log_tail_lines=5)
    assert status.phase is TuningJobPhase.FAILED
    assert status.error is not None and status.error.reason == "OutOfMemory"
    assert "on node 1: the GPU ran out of memory" in status.error.message
    assert "perDeviceBatchSize" in status.error.message

    # Without another node's own failure, node 0's words stand; a node that also only followed is no cause.
    assert failure_elsewhere([ended(0, peer, 1), ended(1, peer, 1)], "trainer") is None
    assert failure_elsewhere([ended(0, peer, 1), ended(1, None, 137)], "trainer") is None
    assert failure_elsewhere([pod("single", started=T0, finished=T0)], "trainer") is None, "a one-Pod Job"
    alone = derive_status(None, RunObservation(generation=1, job=job, pod=observe_pods(pods[:1], "trainer")),
                          now=T0, log_tail_lines=5)
    assert alone.error is not None and PEER_FAILURE in alone.error.message
