"""The real operator running a 2-node TuningJob against the emulated API server.

The emulated Job controller runs the Indexed Job: one Pod per completion index. The test plays
the kubelets: the follower (index 1) prints nothing useful and writes no result, Pod 0 prints
progress and ends with the result. The operator must create the headless Service, read
progress and the result from Pod 0, and show the world size and the effective batch.
"""

from __future__ import annotations

import json
import time
from typing import Any

from test_operator_wiring import (
    NS,
    SETTINGS,
    TUNINGJOBS,
    progress_log,
    ready_dataset,
    status_of,
    succeeded_result,
    training_job,
    tuningjob,
    wait_phase,
)
from test_preflight_wiring import play_preflight, report

from kubetune.api.contract import ExitCode
from kubetune.builders import rendezvous_service_name, trainer_config_map_name, training_job_name
from kubetune.builders.names import preflight_job_name
from support.kube_cluster import JOBS, PODS, Cluster
from support.kube_objects import COMPLETION_INDEX, stamp
from support.kubelet_plays import pods_of, run_container, terminate_container


def _pods_by_index(cluster: Cluster, job: dict[str, Any], count: int) -> dict[str, str]:
    def found() -> dict[str, str] | None:
        pods = {(p["metadata"].get("annotations") or {}).get(COMPLETION_INDEX): p["metadata"]["name"]
                for p in pods_of(cluster, job)}
        return pods if len(pods) == count else None
    return cluster.wait_for(f"{count} indexed Pods of {job['metadata']['name']}", found)


def test_a_two_node_run_goes_to_succeeded_reading_pod_zero(cluster: Cluster) -> None:
    with cluster.operator(SETTINGS):
        ready_dataset(cluster)
        spec = {"resources": {"gpus": 4, "nodes": 2},
                "hyperparameters": {"perDeviceBatchSize": 2, "gradientAccumulationSteps": 3}}
        tj_uid = cluster.apply(TUNINGJOBS, tuningjob(**spec))["metadata"]["uid"]
        job = training_job(cluster)
        assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["parallelism"] == 2
        service = cluster.get("v1/services", NS, rendezvous_service_name("support-bot"))
        assert service is not None and service["spec"]["clusterIP"] == "None"
        assert [(r["kind"], r["uid"]) for r in service["metadata"]["ownerReferences"]] == [("TuningJob", tj_uid)]
        assert job["spec"]["template"]["spec"]["subdomain"] == service["metadata"]["name"]
        config_map = cluster.get("v1/configmaps", NS, trainer_config_map_name("support-bot"))
        assert config_map is not None
        config = json.loads(next(iter(config_map["data"].values())))
        assert config["launch"]["rendezvousEndpoint"] == \
            f"{training_job_name('support-bot')}-0.{service['metadata']['name']}:29500"
        status = cluster.wait_for("the run's size in status", lambda: (s := status_of(cluster)).get("worldSize") and s)
        assert (status["worldSize"], status["effectiveBatchSize"]) == (2 * 4, 2 * 8 * 3)

        pods = _pods_by_index(cluster, job, 2)
        leader, follower = pods["0"], pods["1"]
        assert cluster.get(PODS, NS, leader)["spec"]["hostname"] == f"{training_job_name('support-bot')}-0"
        cluster.set_log(NS, leader, progress_log(40))
        cluster.set_log(NS, follower, "W1201 torch/distributed/run.py: a follower's chatter\n")
        run_container(cluster, NS, follower)
        run_container(cluster, NS, leader)
        run_container(cluster, NS, follower)  # the follower's Pod changed last
        status = cluster.wait_for("progress from Pod 0", lambda: (s := status_of(cluster))
                                  .get("progress", {}).get("step") == 40 and s)
        assert status["phase"] == "Running"
        assert not any("chatter" in line for line in status.get("logTail", []))

        terminate_container(cluster, NS, follower, exit_code=0)  # followers write no result
        terminate_container(cluster, NS, leader, exit_code=0, message=succeeded_result())
        status = wait_phase(cluster, "Succeeded")
        assert status["result"]["revision"] == "f" * 40 and status["metrics"]["evalLoss"] == 1.1
        assert status["worldSize"] == 8


def test_a_two_node_run_waits_for_one_cpu_preflight_pod_and_counts_every_pods_gpus(cluster: Cluster) -> None:
    with cluster.operator(SETTINGS):
        ready_dataset(cluster)
        cluster.apply(TUNINGJOBS, tuningjob(resources={"gpus": 4, "nodes": 2}, guardrails={"preflight": True}))
        preflight = cluster.wait_for("the preflight Job",
                                     lambda: cluster.get(JOBS, NS, preflight_job_name("support-bot")))
        # One CPU Pod checks the run, however many nodes it will train on.
        assert preflight["spec"].get("completionMode") != "Indexed"
        assert preflight["spec"].get("parallelism", 1) == 1 and preflight["spec"].get("completions", 1) == 1
        assert "subdomain" not in preflight["spec"]["template"]["spec"]
        assert "nvidia.com/gpu" not in preflight["spec"]["template"]["spec"]["containers"][0]["resources"].get(
            "limits", {})
        wait_phase(cluster, "Pending")
        assert cluster.get(JOBS, NS, training_job_name("support-bot")) is None, "no GPU Job before the preflight"
        assert cluster.get("v1/services", NS, rendezvous_service_name("support-bot")) is None

        play_preflight(cluster, "support-bot", report(checked=["data", "memory"]), ExitCode.OK)
        job = training_job(cluster)
        assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["parallelism"] == 2
        assert cluster.get("v1/services", NS, rendezvous_service_name("support-bot")) is not None

        pods = _pods_by_index(cluster, job, 2)
        for index in ("1", "0"):  # the follower first: its digest is there to be ignored
            run_container(cluster, NS, pods[index])
            # Both nodes have trained for 90 s; the follower's kubelet resolved the image to another digest.
            statuses = cluster.get(PODS, NS, pods[index])["status"]["containerStatuses"]
            statuses[0]["state"] = {"running": {"startedAt": stamp(time.time() - 90)}}
            if index == "1":
                statuses[0]["imageID"] = "registry.local/trainer@sha256:" + "1" * 64
            cluster.patch(PODS, NS, pods[index], {"status": {"containerStatuses": statuses}}, subresource="status")
        pod_zero_image = cluster.get(PODS, NS, pods["0"])["status"]["containerStatuses"][0]["imageID"]
        assert pod_zero_image.endswith("@sha256:" + "0" * 64)
        cluster.set_log(NS, pods["0"], progress_log(40))
        status = cluster.wait_for("usage from both Pods", lambda: (s := status_of(cluster)).get(
            "progress", {}).get("step") == 40 and s.get("usage", {}).get("wallSeconds") and s)
        usage = status["usage"]
        assert 90 <= usage["wallSeconds"] < 150, "the Pods ran side by side: their run time counts once"
        assert abs(usage["gpuSeconds"] - 4 * 2 * usage["wallSeconds"]) < 1, "4 GPUs per Pod x 2 Pods x run time"
        assert status["pinned"]["trainerImage"] == pod_zero_image, "Pod 0's image, not the follower's"
