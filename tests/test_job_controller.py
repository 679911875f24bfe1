"""The emulated cluster's Job controller writes what kube-controller-manager 1.33 writes.

The wiring tests trust this rig to stand in for a real control plane, so its behaviour is
pinned here against the real controller's (pkg/controller/job): the Pod it makes from the
template, the order and content of its status writes, retries and the back-off, the pod
failure policy, suspend and resume, the active deadline. The test plays the kubelet.
"""

from __future__ import annotations

from typing import Any

from kubetune.api import ExitCode
from kubetune.builders.pod import pod_failure_policy
from support.job_rules import parse_stamp
from support.kube_cluster import JOBS, PODS, Cluster
from support.kube_objects import JOB_TRACKING_FINALIZER
from support.kubelet_plays import job_condition, run_container, schedule_pod, start_pod, terminate_container

NS = "default"


def job_manifest(name: str = "train", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": NS},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {"kubetune.io/tuningjob": name}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "trainer", "image": "trainer:1"}]},
            },
            **spec,
        },
    }


def job_status(cluster: Cluster, name: str = "train") -> dict[str, Any]:
    return (cluster.get(JOBS, NS, name) or {}).get("status") or {}


def wait_condition(cluster: Cluster, type_: str, name: str = "train") -> dict[str, Any]:
    return cluster.wait_for(f"Job condition {type_}", lambda: job_condition(cluster, NS, name, type_))


def status_writes(cluster: Cluster, name: str = "train") -> list[tuple[int, int, int, int, list[str], list[str]]]:
    """(active, ready, succeeded, failed, uncounted uids, condition types) of each version with a status."""
    out = []
    for version in cluster.history(JOBS, NS, name):
        status = version.get("status")
        if status:
            uncounted = status["uncountedTerminatedPods"]
            out.append((status.get("active", 0), status["ready"], status.get("succeeded", 0), status.get("failed", 0),
                        [*uncounted.get("succeeded", []), *uncounted.get("failed", [])],
                        [c["type"] for c in status.get("conditions", [])]))
    return [s for i, s in enumerate(out) if i == 0 or s != out[i - 1]]


def event_messages(cluster: Cluster, name: str) -> list[tuple[str, str, str]]:
    return [(e["type"], e["reason"], e["message"]) for e in cluster.events(name, NS)]


def test_a_job_gets_its_pod_and_status_as_the_controller_writes_them(cluster: Cluster) -> None:
    job = cluster.apply(JOBS, job_manifest())
    uid = job["metadata"]["uid"]
    # The API server's defaulting.
    assert job["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert job["spec"]["template"]["metadata"]["labels"]["batch.kubernetes.io/job-name"] == "train"
    assert (job["spec"]["parallelism"], job["spec"]["completions"]) == (1, 1)

    name = start_pod(cluster, job)
    pod = cluster.get(PODS, NS, name)
    assert pod is not None and name.startswith("train-") and len(name) == len("train-") + 5
    meta = pod["metadata"]
    assert meta["labels"]["kubetune.io/tuningjob"] == "train"
    assert meta["labels"]["job-name"] == meta["labels"]["batch.kubernetes.io/job-name"] == "train"
    assert meta["labels"]["controller-uid"] == uid
    assert meta["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "Job", "name": "train", "uid": uid,
                                        "controller": True, "blockOwnerDeletion": True}]
    assert meta["finalizers"] == [JOB_TRACKING_FINALIZER]
    assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    status = cluster.wait_for("the Job's first status", lambda: job_status(cluster))
    assert status["startTime"] and (status["active"], status["ready"], status["terminating"]) == (1, 0, 0)
    assert status["uncountedTerminatedPods"] == {}
    cluster.wait_for("SuccessfulCreate", lambda: ("Normal", "SuccessfulCreate", f"Created pod: {name}")
                     in event_messages(cluster, "train"))

    # The scheduler's binding is one write: the node and PodScheduled together.
    versions = len(cluster.history(PODS, NS, name))
    schedule_pod(cluster, NS, name)
    pod = cluster.get(PODS, NS, name)
    assert pod is not None and pod["spec"]["nodeName"]
    assert [(c["type"], c["status"]) for c in pod["status"]["conditions"]] == [("PodScheduled", "True")]
    assert len(cluster.history(PODS, NS, name)) == versions + 1


def test_a_succeeded_pod_completes_the_job_in_two_writes(cluster: Cluster) -> None:
    job = cluster.apply(JOBS, job_manifest())
    name = start_pod(cluster, job)
    run_container(cluster, NS, name)
    cluster.wait_for("ready 1", lambda: job_status(cluster).get("ready") == 1)
    uid = cluster.get(PODS, NS, name)["metadata"]["uid"]  # type: ignore[index]
    terminate_container(cluster, NS, name, exit_code=0, message="done")
    complete = wait_condition(cluster, "Complete")

    assert status_writes(cluster) == [
        (1, 0, 0, 0, [], []),
        (1, 1, 0, 0, [], []),
        (0, 0, 0, 0, [uid], ["SuccessCriteriaMet"]),  # counted only once its finalizer is gone
        (0, 0, 1, 0, [], ["SuccessCriteriaMet", "Complete"]),
    ]
    assert (complete["reason"], complete["message"]) == ("CompletionsReached", "Reached expected number of "
                                                                               "succeeded pods")
    assert job_status(cluster)["completionTime"] == complete["lastTransitionTime"]
    assert "finalizers" not in cluster.get(PODS, NS, name)["metadata"]  # type: ignore[index]
    cluster.wait_for("Completed", lambda: ("Normal", "Completed", "Job completed") in event_messages(cluster, "train"))


def test_a_failjob_rule_fails_the_job_at_once(cluster: Cluster) -> None:
    job = cluster.apply(JOBS, job_manifest(backoffLimit=2, podFailurePolicy=pod_failure_policy("trainer")))
    name = start_pod(cluster, job)
    run_container(cluster, NS, name)
    terminate_container(cluster, NS, name, exit_code=ExitCode.PERMANENT, message="bad config")
    failed = wait_condition(cluster, "Failed")
    message = (f"Container trainer for pod {NS}/{name} failed with exit code {int(ExitCode.PERMANENT)} "
               "matching FailJob rule at index 0")
    assert (failed["reason"], failed["message"]) == ("PodFailurePolicy", message)
    assert [types for *_, types in status_writes(cluster)][-2:] == [["FailureTarget"], ["FailureTarget", "Failed"]]
    assert job_status(cluster)["failed"] == 1 and "completionTime" not in job_status(cluster)
    assert len([p for p in cluster.list(PODS, NS) if p["metadata"]["name"].startswith("train-")]) == 1
    cluster.wait_for("the failure Event", lambda: ("Warning", "PodFailurePolicy", message)
                     in event_messages(cluster, "train"))


def test_a_failed_pod_is_replaced_after_the_backoff_until_the_limit(cluster: Cluster) -> None:
    job = cluster.apply(JOBS, job_manifest(backoffLimit=1))
    first = start_pod(cluster, job)
    terminate_container(cluster, NS, first, exit_code=1)
    finished = parse_stamp(cluster.get(PODS, NS, first)["status"]["containerStatuses"][0]  # type: ignore[index]
                           ["state"]["terminated"]["finishedAt"])
    second = start_pod(cluster, job, other_than=first)
    created = parse_stamp(cluster.get(PODS, NS, second)["metadata"]["creationTimestamp"])  # type: ignore[index]
    assert finished is not None and created is not None
    assert created - finished >= cluster.job_controller.pod_failure_backoff  # type: ignore[union-attr]
    assert job_status(cluster)["failed"] == 1 and job_condition(cluster, NS, "train", "Failed") is None

    terminate_container(cluster, NS, second, exit_code=1)
    failed = wait_condition(cluster, "Failed")
    assert (failed["reason"], failed["message"]) == ("BackoffLimitExceeded", "Job has reached the specified "
                                                                             "backoff limit")
    assert job_status(cluster)["failed"] == 2
    pods = [p for p in cluster.list(PODS, NS) if p["metadata"]["name"].startswith("train-")]
    assert len(pods) == 2 and not any(p["metadata"].get("finalizers") for p in pods)


def test_a_disruption_the_policy_ignores_is_not_counted(cluster: Cluster) -> None:
    job = cluster.apply(JOBS, job_manifest(backoffLimit=0, podFailurePolicy=pod_failure_policy("trainer")))
    first = start_pod(cluster, job)
    run_container(cluster, NS, first)
    # Preempted: the scheduler marks the Pod, then the kubelet kills its container.
    pod = cluster.get(PODS, NS, first)
    assert pod is not None
    disrupted = [*pod["status"]["conditions"], {"type": "DisruptionTarget", "status": "True",
                                                "reason": "PreemptionByScheduler", "lastTransitionTime": None}]
    cluster.patch(PODS, NS, first, {"status": {"conditions": disrupted}}, subresource="status")
    terminate_container(cluster, NS, first, exit_code=137)
    assert cluster.get(PODS, NS, first)["status"]["phase"] == "Failed"  # type: ignore[index]
    second = start_pod(cluster, job, other_than=first)
    assert second != first
    assert job_condition(cluster, NS, "train", "Failed") is None and "failed" not in job_status(cluster)


def test_suspend_deletes_the_pod_and_resume_starts_another(cluster: Cluster) -> None:
    job = cluster.apply(JOBS, job_manifest())
    first = start_pod(cluster, job)
    run_container(cluster, NS, first)
    started = cluster.wait_for("ready", lambda: job_status(cluster).get("ready") == 1 and job_status(cluster))
    cluster.patch(JOBS, NS, "train", {"spec": {"suspend": True}})
    suspended = wait_condition(cluster, "Suspended")
    assert (suspended["reason"], suspended["message"]) == ("JobSuspended", "Job suspended")
    cluster.wait_for("the Pod deleted", lambda: cluster.get(PODS, NS, first) is None)
    cluster.wait_for("nothing active", lambda: (s := job_status(cluster)).get("active", 0) == 0
                     and s["terminating"] == 0)

    cluster.patch(JOBS, NS, "train", {"spec": {"suspend": False}})
    second = start_pod(cluster, job, other_than=first)
    resumed = cluster.wait_for("Suspended False", lambda: next(
        (c for c in job_status(cluster).get("conditions", []) if c["type"] == "Suspended" and c["status"] == "False"),
        None))
    assert (resumed["reason"], resumed["message"]) == ("JobResumed", "Job resumed")
    assert job_status(cluster)["startTime"] >= started["startTime"] and second != first
    reasons = [reason for _, reason, _ in event_messages(cluster, "train")]
    assert reasons.count("Suspended") == 1 and reasons.count("Resumed") == 1


def test_a_job_created_suspended_starts_nothing(cluster: Cluster) -> None:
    cluster.apply(JOBS, job_manifest(suspend=True))
    suspended = wait_condition(cluster, "Suspended")
    assert suspended["reason"] == "JobSuspended"
    assert "startTime" not in job_status(cluster) and job_status(cluster).get("active", 0) == 0
    assert not [p for p in cluster.list(PODS, NS) if p["metadata"]["name"].startswith("train-")]


def test_a_job_past_its_deadline_fails_and_its_pod_goes(cluster: Cluster) -> None:
    # startTime has whole seconds, so the deadline comes 1-2 s after the start.
    job = cluster.apply(JOBS, job_manifest(activeDeadlineSeconds=2, backoffLimit=3))
    name = start_pod(cluster, job)
    failed = wait_condition(cluster, "Failed")
    assert (failed["reason"], failed["message"]) == ("DeadlineExceeded", "Job was active longer than specified "
                                                                         "deadline")
    assert job_condition(cluster, NS, "train", "FailureTarget") is not None
    assert cluster.get(PODS, NS, name) is None


def test_a_refused_pod_is_a_failed_create_event_and_a_later_try(cluster: Cluster) -> None:
    quota = "exceeded quota: cpu-quota, requested: requests.cpu=1, used: requests.cpu=4, limited: requests.cpu=4"
    cluster.emulator.refused_pods[NS] = quota
    cluster.apply(JOBS, job_manifest())

    def failed_creates() -> list[str]:
        return [message for type_, reason, message in event_messages(cluster, "train")
                if (type_, reason) == ("Warning", "FailedCreate")]

    warnings = cluster.wait_for("a second FailedCreate (the controller tried again)",
                                lambda: failed_creates() if len(failed_creates()) >= 2 else None)
    # As pkg/controller/job's pod control: "Error creating: " and the API server's refusal.
    assert warnings[0] == f'Error creating: pods "train-" is forbidden: {quota}'
    assert not cluster.list(PODS, NS)
    assert job_status(cluster).get("active", 0) == 0
    del cluster.emulator.refused_pods[NS]
    cluster.wait_for("the Pod, once the quota has room", lambda: cluster.list(PODS, NS))
