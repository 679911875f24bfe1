"""A Job whose Pod the API server refuses (ResourceQuota, admission): read, and told in status.

The reading side is controller/podrefusals.py (the Job controller's FailedCreate Events, read
once its sync has left the Job without a Pod); the telling side is the status derivation (reason PodCreationRefused)
for a run's training Job, its preflight Job and a Dataset's validation Job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kubetune.api import TuningJobPhase
from kubetune.controller.podrefusals import NOT_YET_SECONDS, READ_INTERVAL_SECONDS, PodRefusals
from kubetune.status import RunObservation, derive_status
from kubetune.status.conditions import Reason, get_condition
from kubetune.status.dataset import derive_dataset_status
from kubetune.status.guardrails import PreflightObservation, preflight_verdict
from kubetune.status.observe import JobObservation

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
QUOTA = ('Error creating: pods "run-train-x7k2p" is forbidden: exceeded quota: gpu-quota, requested: '
         'requests.nvidia.com/gpu=8, used: requests.nvidia.com/gpu=8, limited: requests.nvidia.com/gpu=8')
POLICY = ('Error creating: admission webhook "validate.kyverno.svc" denied the request: '
          'policy require-team-label: label "team" is required')


class FakeEvents:
    """KubeClient.list_events with canned Events; counts its calls."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events
        self.asked: list[tuple[str, dict[str, str]]] = []

    def list_events(self, namespace: str, fields: Mapping[str, str]) -> list[dict[str, Any]]:
        self.asked.append((namespace, dict(fields)))
        return list(self.events)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def event(message: str, at: datetime) -> dict[str, Any]:
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"reason": "FailedCreate", "message": message, "firstTimestamp": stamp, "lastTimestamp": stamp}


def job(**changes: Any) -> JobObservation:
    """A Job the controller has synced (startTime) without getting its Pod (active 0)."""
    return replace(JobObservation(name="run-train", created_at=T0, start_time=T0), **changes)


def tracker(events: list[dict[str, Any]]) -> tuple[PodRefusals, FakeEvents, Clock]:
    kube, clock = FakeEvents(events), Clock()
    return PodRefusals(kube, clock), kube, clock  # type: ignore[arg-type]  # duck-typed KubeClient


def test_a_refused_job_is_read_then_at_most_once_per_interval() -> None:
    refusals, kube, clock = tracker([event(POLICY, T0), event(QUOTA, T0 + timedelta(seconds=30))])
    seen = refusals.observe("ml", job(), False)
    assert seen is not None and seen.pods_refused == QUOTA, "the newest FailedCreate"
    assert kube.asked == [("ml", {"involvedObject.kind": "Job", "involvedObject.name": "run-train",
                                  "reason": "FailedCreate"})]
    clock.now += 10
    again = refusals.observe("ml", job(), False)
    assert again is not None and again.pods_refused == QUOTA and len(kube.asked) == 1, "not read again yet"
    assert refusals.next_read("ml", "run-train") == pytest.approx(READ_INTERVAL_SECONDS - 10)
    clock.now += READ_INTERVAL_SECONDS
    kube.events = []  # e.g. the Events expired
    later = refusals.observe("ml", job(), False)
    assert later is not None and later.pods_refused is None and len(kube.asked) == 2


def test_an_event_not_posted_yet_is_looked_for_again_soon() -> None:
    refusals, kube, clock = tracker([])
    first = refusals.observe("ml", job(), False)
    assert first is not None and first.pods_refused is None
    assert refusals.next_read("ml", "run-train") == pytest.approx(NOT_YET_SECONDS)
    kube.events = [event(QUOTA, T0)]
    clock.now += NOT_YET_SECONDS
    second = refusals.observe("ml", job(), False)
    assert second is not None and second.pods_refused == QUOTA and len(kube.asked) == 2


@pytest.mark.parametrize("state", [
    {"has_pods": True}, {"active": 1}, {"start_time": None}, {"suspended": True}, {"complete": True},
    {"failure_reason": "DeadlineExceeded"},
], ids=["has pods", "active", "not synced yet", "suspended", "complete", "failed"])
def test_a_job_that_was_not_refused_is_never_read(state: dict[str, Any]) -> None:
    refusals, kube, _ = tracker([event(QUOTA, T0)])
    refusals.observe("ml", job(), False)  # read once while refused
    has_pods = state.pop("has_pods", False)
    seen = refusals.observe("ml", job(**state), has_pods)
    assert seen is not None and seen.pods_refused is None
    assert len(kube.asked) == 1
    assert refusals.next_read("ml", "run-train") is None


def test_no_job_no_read() -> None:
    refusals, kube, _ = tracker([])
    assert refusals.observe("ml", None, False) is None and kube.asked == []


def test_a_run_whose_pod_is_refused_says_why_and_what_to_do() -> None:
    status = derive_status(None, RunObservation(generation=1, job=job(pods_refused=QUOTA)), now=T0, log_tail_lines=5)
    assert status.phase is TuningJobPhase.STARTING
    running = get_condition(status.conditions, "Running")
    assert running is not None and running.reason == Reason.POD_CREATION_REFUSED
    assert status.message is not None and "exceeded quota: gpu-quota" in status.message
    assert "ResourceQuota" in status.message and "spec.resources" in status.message
    policy = derive_status(None, RunObservation(generation=1, job=job(pods_refused=POLICY)), now=T0, log_tail_lines=5)
    assert policy.message is not None and "require-team-label" in policy.message
    assert "admission policy" in policy.message


def test_the_preflight_and_a_dataset_validation_say_it_too() -> None:
    verdict = preflight_verdict(PreflightObservation(job=job(name="run-preflight", pods_refused=QUOTA)))
    assert verdict.reason == Reason.POD_CREATION_REFUSED and "exceeded quota" in verdict.message
    dataset = derive_dataset_status(None, generation=1, source="hf: org/data", job_name="data-validate-1",
                                    job=job(name="data-validate-1", pods_refused=QUOTA), pod=None, now=T0)
    assert dataset.message is not None and "exceeded quota" in dataset.message


def test_a_read_the_api_server_refuses_leaves_the_pass_alone_and_is_tried_later() -> None:
    class Refusing(FakeEvents):
        def list_events(self, namespace: str, fields: Mapping[str, str]) -> list[dict[str, Any]]:
            super().list_events(namespace, fields)
            raise ApiException(status=403, reason="Forbidden")  # a Role without `list events`

    kube, clock = Refusing([]), Clock()
    refusals = PodRefusals(kube, clock)  # type: ignore[arg-type]
    seen = refusals.observe("ml", job(), False)
    assert seen is not None and seen.pods_refused is None
    assert refusals.next_read("ml", "run-train") == pytest.approx(READ_INTERVAL_SECONDS)
    clock.now += READ_INTERVAL_SECONDS
    refusals.observe("ml", job(), False)
    assert len(kube.asked) == 2
