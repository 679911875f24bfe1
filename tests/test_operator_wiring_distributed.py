"""The real operator running a 2-node TuningJob against the emulated API server.

The test plays the Job controller and the kubelets of an Indexed Job: two Pods (completion
index 0 and 1), the follower's started last and printing nothing useful, Pod 0 printing
progress and ending with the result. The operator must create the headless Service, read
progress and the result from Pod 0, and show the world size and effective batch.
"""

from __future__ import annotations

import json

from test_operator_wiring import (
    NS,
    SETTINGS,
    TUNINGJOBS,
    progress_log,
    ready_dataset,
    succeeded_result,
    training_job,
    tuningjob,
    wait_phase,
)

from kubetune.builders import rendezvous_service_name, training_job_name
from support.kube_emulator import Cluster, job_finished, run_container, start_pod, terminate_container


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
        config = json.loads(next(iter(cluster.get("v1/configmaps", NS, "support-bot-trainer-config")["data"]
                                      .values())))
        assert config["launch"]["rendezvousEndpoint"] == \
            f"{training_job_name('support-bot')}-0.{service['metadata']['name']}:29500"

        status = wait_phase(cluster, "Starting")
        assert status["worldSize"] == 8 and status["effectiveBatchSize"] == 2 * 8 * 3

        leader = start_pod(cluster, job, index=0)
        follower = start_pod(cluster, job, index=1)  # the newest Pod, but not the one that speaks
        cluster.set_log(NS, leader, progress_log(40))
        cluster.set_log(NS, follower, "W1201 torch/distributed/run.py: a follower's chatter\n")
        run_container(cluster, NS, leader)
        run_container(cluster, NS, follower)
        status = cluster.wait_for("progress from Pod 0", lambda: (s := wait_phase(cluster, "Running"))
                                  .get("progress", {}).get("step") == 40 and s)
        assert not any("chatter" in line for line in status.get("logTail", []))

        terminate_container(cluster, NS, follower, exit_code=0)  # followers write no result
        terminate_container(cluster, NS, leader, exit_code=0, message=succeeded_result())
        job_finished(cluster, NS, job["metadata"]["name"], succeeded=True)
        status = wait_phase(cluster, "Succeeded")
        assert status["result"]["revision"] == "f" * 40 and status["metrics"]["evalLoss"] == 1.1
        assert status["worldSize"] == 8
