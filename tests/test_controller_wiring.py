"""The operator's controller against the emulated cluster with its Job controller: what a run costs.

The emulated Job controller creates each Job's Pod and writes the Job's status; the test plays
the scheduler and the kubelet on every Pod. So each TuningJob brings several Pod and Job watch
events, as on a real cluster, and the operator must answer them from its cache.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import replace
from typing import Any

from test_operator_wiring import conditions, status_of

from kubetune.api import ModelResult, TrainerResult
from kubetune.builders import training_job_name, validation_job_name
from kubetune.controller.refusals import REASON as REFUSED
from kubetune.status.conditions import Reason
from support.kube_cluster import JOBS, PODS, WIRING_SETTINGS, Cluster
from support.kube_rbac import Authorizer, chart_authorizer
from support.kubelet_plays import run_container, start_pod, terminate_container

TUNINGJOBS = "kubetune.io/v1alpha1/tuningjobs"
DATASETS = "kubetune.io/v1alpha1/datasets"
NS = "default"
# No refresh inside the test: every request counted below answers an event.
SETTINGS = replace(WIRING_SETTINGS, status_refresh_seconds=300)


def tuningjob(name: str) -> dict[str, Any]:
    """A run that needs no Dataset: inline pvc data, pvc output."""
    return {
        "apiVersion": "kubetune.io/v1alpha1", "kind": "TuningJob",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "baseModel": {"scratch": {}},
            "datasets": {"train": [{"source": {"pvc": {"claimName": "data", "path": "train.jsonl"}},
                                    "format": "messages"}]},
            "output": {"pvc": {"claimName": "models", "path": name}},
            "resources": {"gpus": 0, "cpu": "1", "memory": "2Gi"},
            "guardrails": {"preflight": False},  # the costs counted here are the training Job's path
        },
    }


def result(name: str) -> str:
    return json.dumps(TrainerResult(status="Succeeded", model=ModelResult(path=f"/models/{name}")).to_wire())


def phase(cluster: Cluster, name: str) -> str | None:
    return ((cluster.get(TUNINGJOBS, NS, name) or {}).get("status") or {}).get("phase")


def _what(method: str, path: str) -> str:
    """`PATCH tuningjobs`, `GET log`, `LIST pods` (a collection), `GET discovery` ..."""
    parts = path.strip("/").split("/")
    if parts[-1] == "log":
        return f"{method} log"
    if "namespaces" in parts and len(parts) > parts.index("namespaces") + 2:
        plural = parts[parts.index("namespaces") + 2]
        named = len(parts) > parts.index("namespaces") + 3
    elif len(parts) in (3, 4) and parts[0] in ("api", "apis") and parts[-1] not in ("v1", "v1alpha1"):
        plural, named = parts[-1], False  # a list across namespaces
    else:
        return f"{method} discovery"
    return f"{method} {plural}" if named or method != "GET" else f"LIST {plural}"


def operator_requests(cluster: Cluster) -> Counter[str]:
    """The operator's requests so far, by method and resource (watch streams left out)."""
    counts: Counter[str] = Counter()
    for method in ("GET", "POST", "PATCH", "PUT", "DELETE"):
        for path, params in cluster.requests(method, "/"):
            if not params.get("watch"):
                counts[_what(method, path)] += 1
    return counts


def test_a_burst_with_pod_and_job_traffic_costs_a_bounded_number_of_requests_per_tuningjob(cluster: Cluster) -> None:
    names = [f"run-{i:02d}" for i in range(12)]
    with cluster.operator(SETTINGS):
        cluster.wait_quiet()
        before = operator_requests(cluster)
        for name in names:
            cluster.apply(TUNINGJOBS, tuningjob(name))
        jobs = {name: cluster.wait_for(f"the Job of {name}", lambda n=name: cluster.get(JOBS, NS, training_job_name(n)))
                for name in names}
        pods = {name: start_pod(cluster, job) for name, job in jobs.items()}
        for pod in pods.values():  # bound, ContainerCreating, Running: each a Pod event
            run_container(cluster, NS, pod)
        cluster.wait_for("every run Running", lambda: all(phase(cluster, n) == "Running" for n in names))
        for name, pod in pods.items():  # the Job controller then completes each Job in two writes
            terminate_container(cluster, NS, pod, exit_code=0, message=result(name))
        cluster.wait_for("every run Succeeded", lambda: all(phase(cluster, n) == "Succeeded" for n in names), 30)
        cluster.wait_quiet(quiet=0.5, timeout=5)
        spent = operator_requests(cluster) - before

    # Nothing is read per pass: no TuningJob, Dataset, Job or Pod; a run's Pods are listed at most
    # once (a Job seen finished before its Pod's last change); the log when the trainer's Pod changed.
    assert not {k for k in spent if k.startswith("GET ") and k != "GET log"}, spent
    assert spent["LIST pods"] <= len(names), spent
    # Each run: its ConfigMap and Job; one status patch per phase or message it goes through
    # (Starting, ContainerCreating, Running, Succeeded ...); its Events (JobCreated, Started,
    # Published, Succeeded); a few log reads.
    assert spent["POST configmaps"] == spent["POST jobs"] == len(names), spent
    assert spent["PATCH tuningjobs"] <= 6 * len(names), spent
    assert spent["POST events"] == 4 * len(names), spent
    assert spent["GET log"] <= 4 * len(names), spent
    assert sum(spent.values()) <= 16 * len(names), spent
    for name in names:  # and the story is told once
        reasons = cluster.event_reasons(name)
        assert [reasons.count(r) for r in ("JobCreated", "Started", "Published", "Succeeded")] == [1, 1, 1, 1], reasons


def test_a_run_finished_before_a_restart_is_not_touched(cluster: Cluster) -> None:
    with cluster.operator(SETTINGS):
        cluster.apply(TUNINGJOBS, tuningjob("done"))
        job = cluster.wait_for("the Job", lambda: cluster.get(JOBS, NS, training_job_name("done")))
        pod = start_pod(cluster, job)
        run_container(cluster, NS, pod)
        terminate_container(cluster, NS, pod, exit_code=0, message=result("done"))
        cluster.wait_for("Succeeded", lambda: phase(cluster, "done") == "Succeeded")
    version = cluster.get(TUNINGJOBS, NS, "done")["metadata"]["resourceVersion"]  # type: ignore[index]
    events = len(cluster.events("done"))
    before = operator_requests(cluster)

    with cluster.operator(SETTINGS):
        cluster.wait_quiet(quiet=1.0, timeout=5)
        spent = operator_requests(cluster) - before
    # The restart lists what it watches (kopf's listing and the cache's), reads nothing else and
    # writes nothing.
    assert {k for k in spent if not k.startswith(("LIST ", "GET discovery"))} == set(), spent
    assert cluster.get(TUNINGJOBS, NS, "done")["metadata"]["resourceVersion"] == version  # type: ignore[index]
    assert len(cluster.events("done")) == events


def test_kopf_writes_nothing_on_a_dataset(cluster: Cluster) -> None:
    # Datasets were handled by kopf's create/update handlers, which kept the last handled spec
    # in an annotation; now both kinds are handled on watch events and compared by generation.
    with cluster.operator(SETTINGS):
        cluster.apply(DATASETS, {
            "apiVersion": "kubetune.io/v1alpha1", "kind": "Dataset", "metadata": {"name": "chats", "namespace": NS},
            "spec": {"source": {"configMap": {"name": "chats", "key": "data.jsonl"}}, "format": "messages"},
        })
        cluster.wait_for("the validation Job", lambda: cluster.get(JOBS, NS, validation_job_name("chats", 1)))
        cluster.wait_for("phase Validating", lambda: ((cluster.get(DATASETS, NS, "chats") or {}).get("status") or {})
                         .get("phase") == "Validating")
        cluster.wait_quiet()
    meta = (cluster.get(DATASETS, NS, "chats") or {})["metadata"]
    assert not meta.get("annotations") and not meta.get("finalizers"), meta


def test_log_refreshes_stay_within_the_log_read_budget_and_reach_every_run(cluster: Cluster) -> None:
    # Refresh every second, at most one log read a second (after a burst of one): four running
    # runs would read four logs a second unbudgeted.
    settings = replace(WIRING_SETTINGS, status_refresh_seconds=1, log_reads_per_second=1)
    names = [f"run-{i}" for i in range(4)]
    with cluster.operator(settings):
        pods = {}
        for name in names:
            cluster.apply(TUNINGJOBS, tuningjob(name))
            pods[name] = start_pod(cluster, cluster.wait_for(
                "the Job", lambda n=name: cluster.get(JOBS, NS, training_job_name(n))))
            run_container(cluster, NS, pods[name])
        for name in names:
            cluster.wait_for(f"{name} Running", lambda n=name: phase(cluster, n) == "Running")
        cluster.wait_quiet()

        def reads() -> Counter[str]:
            return Counter(path.split("/")[-2] for path, _ in cluster.requests("GET", "/log"))

        before = reads()
        start = time.monotonic()
        # Every run's log is read again (none starves behind the others)...
        cluster.wait_for("a refresh of every run's log", lambda: all(
            reads()[pods[n]] > before[pods[n]] for n in names), timeout=20)
        time.sleep(1.0)  # the window runs on past the last run's refresh
        # ... at no more than the budget: one a second, plus the token it may have saved up and the
        # read the window's end may have caught in flight.
        refreshed = sum((reads() - before).values())
        window = time.monotonic() - start
        assert refreshed <= window * settings.log_reads_per_second + 2, (refreshed, window)


def test_a_refused_request_is_told_on_the_run_once_and_the_run_goes_on_once_granted(cluster: Cluster) -> None:
    # A cluster whose operator Role lacks one rule the chart renders (a hand-written Role, a
    # namespace outside watchNamespaces): its ConfigMaps are refused with 403.
    cluster.emulator.authorizer = Authorizer([rule for rule in chart_authorizer().rules
                                              if "configmaps" not in rule.get("resources", [])])
    name = "refused"
    with cluster.operator(SETTINGS):
        cluster.apply(TUNINGJOBS, tuningjob(name))

        def told() -> list[dict[str, Any]]:
            return [event for event in cluster.events(name) if event["reason"] == REFUSED]

        [event] = cluster.wait_for("a RequestRefused Event on the run", told)
        assert event["type"] == "Warning"
        assert 'cannot create resource "configmaps" in API group "" in the namespace "default"' in event["message"]
        assert "rbac.create" in event["message"]
        cluster.wait_for("the operator to retry and be refused again", lambda: len(cluster.emulator.denied) >= 3)
        assert len(told()) == 1, "the same refusal is told once, not on every retry"
        assert cluster.get(JOBS, NS, training_job_name(name)) is None

        cluster.emulator.authorizer = chart_authorizer()  # the Role fixed: the run needs no re-apply
        cluster.wait_for("the run's Job", lambda: cluster.get(JOBS, NS, training_job_name(name)), timeout=30)
    cluster.emulator.denied.clear()  # refused on purpose above


def test_a_run_whose_pod_is_refused_says_why_and_starts_once_there_is_room(cluster: Cluster) -> None:
    # A namespace whose ResourceQuota has no room: the API server refuses the Job controller's Pod.
    quota = ("exceeded quota: gpu-quota, requested: requests.nvidia.com/gpu=1, used: requests.nvidia.com/gpu=4, "
             "limited: requests.nvidia.com/gpu=4")
    cluster.emulator.refused_pods[NS] = quota
    name = "no-room"
    job_name = training_job_name(name)
    with cluster.operator(WIRING_SETTINGS):
        cluster.apply(TUNINGJOBS, tuningjob(name))

        def running_reason() -> str | None:
            return conditions(status_of(cluster, name)).get("Running", ("", None))[1]

        cluster.wait_for("the run to say its Pod is refused", lambda: running_reason() == Reason.POD_CREATION_REFUSED,
                         timeout=30)
        status = status_of(cluster, name)
        assert status["phase"] == "Starting"
        assert quota in status["message"] and "ResourceQuota" in status["message"]
        assert Reason.POD_CREATION_REFUSED in cluster.event_reasons(name)
        failed_creates = [e for e in cluster.events(job_name) if e["reason"] == "FailedCreate"]
        assert failed_creates and failed_creates[0]["type"] == "Warning"

        del cluster.emulator.refused_pods[NS]  # room again: the Job controller's next try gets its Pod
        cluster.wait_for("the run to see its Pod", lambda: running_reason() == Reason.STARTING, timeout=30)
        assert [p for p in cluster.list(PODS, NS) if (p["metadata"].get("labels") or {}).get("job-name") == job_name]


def test_a_namespaced_operator_needs_nothing_beyond_the_roles_the_chart_gives_it(cluster: Cluster) -> None:
    # helm install --set watchNamespaces={team-a}: a Role in team-a, nothing cluster-scoped.
    cluster.emulator.authorizer = chart_authorizer("team-a")
    run = tuningjob("scoped")
    run["metadata"]["namespace"] = "team-a"
    with cluster.operator(replace(WIRING_SETTINGS, namespaces=("team-a",))):
        cluster.apply(TUNINGJOBS, run)
        cluster.wait_for("the run's Job in team-a", lambda: cluster.get(JOBS, "team-a", training_job_name("scoped")))
        cluster.wait_for("the run's status", lambda: ((cluster.get(TUNINGJOBS, "team-a", "scoped") or {})
                                                      .get("status") or {}).get("jobName"))
    assert cluster.emulator.denied == []
