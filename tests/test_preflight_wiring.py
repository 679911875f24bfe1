"""The operator runs the preflight before any GPU Job: the real operator against the emulated API server.

The test plays the preflight Pod's end (its termination message is a PreflightReport), then the
training Pod's, and asserts on what the operator wrote: which Jobs exist, the training config's
pinned revisions, status (PreflightPassed, pinned, usage), Events and metrics.
"""

from __future__ import annotations

import json
import time
from typing import Any

from test_operator_wiring import NS, SETTINGS, TUNINGJOBS, conditions, ready_dataset, status_of, wait_phase

from kubetune.api import ModelResult, TrainerResult, TrainingMetrics
from kubetune.api.contract import ExitCode, PreflightReport
from kubetune.api.progress import ProgressEvent, format_event
from kubetune.builders import trainer_config_map_name, training_job_name
from kubetune.builders.names import preflight_config_map_name, preflight_job_name
from kubetune.metrics import OperatorMetrics
from support.kube_cluster import JOBS, PODS, Cluster
from support.kube_objects import stamp
from support.kubelet_plays import run_container, start_pod, terminate_container

BASE_SHA, EXTRA_SHA = "a" * 40, "b" * 40


def tuningjob(name: str = "guarded") -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.io/v1alpha1", "kind": "TuningJob", "metadata": {"name": name, "namespace": NS},
        "spec": {
            "baseModel": {"repo": "meta-llama/Llama-3.1-8B"},
            "datasets": {"train": [{"dataset": "support-chats"},
                                   {"source": {"hf": {"repo": "org/extra"}}, "format": "alpaca"}]},
            "output": {"repo": "my-org/guarded"},
            "hfTokenSecretRef": {"name": "hf-token"},
            "resources": {"gpus": 1},
        },
    }


def report(outcome: str = "Passed", **fields: Any) -> str:
    return json.dumps(PreflightReport.model_validate({"outcome": outcome, **fields}).to_wire())


def play_preflight(cluster: Cluster, name: str, message: str, exit_code: int) -> str:
    job = cluster.wait_for("the preflight Job", lambda: cluster.get(JOBS, NS, preflight_job_name(name)))
    pod = start_pod(cluster, job)
    run_container(cluster, NS, pod)
    terminate_container(cluster, NS, pod, exit_code=exit_code, message=message)
    return pod


def test_the_training_job_waits_for_a_passed_preflight_and_runs_on_what_it_pinned(cluster: Cluster) -> None:
    metrics = OperatorMetrics()
    with cluster.operator(SETTINGS, metrics):
        ready_dataset(cluster)
        cluster.apply(TUNINGJOBS, tuningjob())
        preflight = cluster.wait_for("the preflight Job", lambda: cluster.get(JOBS, NS, preflight_job_name("guarded")))
        status = wait_phase(cluster, "Pending", "guarded")
        assert conditions(status)["PreflightPassed"] == ("Unknown", "Checking")
        assert "before a GPU is used" in status["message"]
        assert cluster.get(JOBS, NS, training_job_name("guarded")) is None, "no GPU Job before the preflight"
        container = preflight["spec"]["template"]["spec"]["containers"][0]
        assert container["command"][:2] == ["kubetune-trainer", "preflight"]
        assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
        preflight_config = json.loads(next(iter(
            cluster.get("v1/configmaps", NS, preflight_config_map_name("guarded"))["data"].values())))
        assert preflight_config["spec"]["resources"]["gpuMemory"] == SETTINGS.gpu_memory

        wont_fit = {"reason": "WontFit", "severity": "Warning",
                    "message": "a rough estimate ... is 138.7 GiB per GPU; perDeviceBatchSize 4 is estimated to fit"}
        play_preflight(cluster, "guarded", report(
            baseModelRevision=BASE_SHA, datasets=[{"name": "hf:org/extra", "revision": EXTRA_SHA}],
            checked=["token", "baseModel", "output", "data", "memory"], issues=[wont_fit]), ExitCode.OK)

        job = cluster.wait_for("the training Job", lambda: cluster.get(JOBS, NS, training_job_name("guarded")))
        config = json.loads(next(iter(
            cluster.get("v1/configmaps", NS, trainer_config_map_name("guarded"))["data"].values())))
        assert config["spec"]["baseModel"]["revision"] == BASE_SHA, "training reads the commit the preflight checked"
        assert config["spec"]["datasets"]["train"][1]["source"]["hf"]["revision"] == EXTRA_SHA
        status = wait_phase(cluster, "Starting", "guarded")
        assert conditions(status)["PreflightPassed"] == ("True", "WontFit")
        assert status["pinned"] == {"baseModelRevision": BASE_SHA, "datasets": [
            {"name": "support-chats", "revision": "0123abcd" * 5}, {"name": "hf:org/extra", "revision": EXTRA_SHA}]}

        pod = start_pod(cluster, job)
        progress = ProgressEvent(step=50, total_steps=100, loss=1.2, tokens=120_000, tokens_per_second=2000.0,
                                 per_device_batch_size=4, gradient_accumulation_steps=2)
        cluster.set_log(NS, pod, format_event(progress) + "\n")
        run_container(cluster, NS, pod)
        # The trainer has run for 90 s (the kubelet's startedAt): the GPU time to account for.
        statuses = cluster.get(PODS, NS, pod)["status"]["containerStatuses"]
        statuses[0]["state"] = {"running": {"startedAt": stamp(time.time() - 90)}}
        cluster.patch(PODS, NS, pod, {"status": {"containerStatuses": statuses}}, subresource="status")
        status = cluster.wait_for("progress at step 50", lambda: (s := status_of(cluster, "guarded")).get(
            "progress", {}).get("step") == 50 and s)
        assert status["progress"]["perDeviceBatchSize"] == 4 and status["progress"]["gradientAccumulationSteps"] == 2
        assert status["pinned"]["trainerImage"].endswith("@sha256:" + "0" * 64)
        assert status["usage"]["trainedTokens"] == 120_000

        result = TrainerResult(status="Succeeded", model=ModelResult(repo="my-org/guarded", revision="f" * 40,
                                                                      base_model_revision=BASE_SHA),
                               metrics=TrainingMetrics(trained_tokens=250_000, runtime_seconds=100.0, steps=100))
        terminate_container(cluster, NS, pod, exit_code=0, message=json.dumps(result.to_wire()))
        status = wait_phase(cluster, "Succeeded", "guarded")
        assert status["usage"]["trainedTokens"] == 250_000 and status["usage"]["tokensPerSecond"] == 2500.0
        assert status["usage"]["gpuSeconds"] == status["usage"]["wallSeconds"]  # one GPU
        assert 90 <= status["usage"]["wallSeconds"] < 120
        assert status["pinned"]["baseModelRevision"] == BASE_SHA
        reasons = cluster.wait_for("the Succeeded event", lambda: (r := cluster.event_reasons("guarded"))
                                   and "Succeeded" in r and r)
        assert reasons.count("WontFit") == 1 and "JobCreated" in reasons
        assert metrics.registry.get_sample_value("kubetune_tuningjob_trained_tokens",
                                                 {"namespace": NS, "name": "guarded"}) == 250_000


def test_a_failed_preflight_fails_the_run_and_no_training_job_is_created(cluster: Cluster) -> None:
    metrics = OperatorMetrics()
    with cluster.operator(SETTINGS, metrics):
        ready_dataset(cluster)
        cluster.apply(TUNINGJOBS, tuningjob())
        gated = {"reason": "ModelGated", "severity": "Error",
                 "message": "baseModel meta-llama/Llama-3.1-8B is gated and the account ann has no access yet: "
                            "accept its license at https://huggingface.co/meta-llama/Llama-3.1-8B"}
        play_preflight(cluster, "guarded", report("Failed", retryable=False, issues=[gated]), ExitCode.PERMANENT)
        status = wait_phase(cluster, "Failed", "guarded")
        assert status["error"]["reason"] == "ModelGated"
        assert "accept its license at https://huggingface.co/meta-llama/Llama-3.1-8B" in status["error"]["message"]
        assert conditions(status)["PreflightPassed"] == ("False", "ModelGated")
        assert conditions(status)["JobCreated"][0] == "False" and "jobName" not in status
        reasons = cluster.wait_for("the Failed event", lambda: (r := cluster.event_reasons("guarded"))
                                   and "Failed" in r and r)
        assert "JobCreated" not in reasons
        assert metrics.registry.get_sample_value("kubetune_failures_total",
                                                 {"kind": "TuningJob", "reason": "ModelGated"}) == 1
        # Later passes (a spec edit, the Job's own updates) create nothing either.
        cluster.patch(TUNINGJOBS, NS, "guarded", {"spec": {"hyperparameters": {"learningRate": 1e-4}}})
        cluster.wait_for("the edit seen", lambda: status_of(cluster, "guarded").get("observedGeneration") == 2)
        assert cluster.get(JOBS, NS, training_job_name("guarded")) is None


def test_a_preflight_that_could_not_reach_the_hub_is_retried_by_its_job(cluster: Cluster) -> None:
    with cluster.operator(SETTINGS, OperatorMetrics()):
        ready_dataset(cluster)
        cluster.apply(TUNINGJOBS, tuningjob())
        down = {"reason": "Unreachable", "severity": "Error", "message": "cannot reach the Hub at https://hf.co"}
        first = play_preflight(cluster, "guarded", report("Failed", retryable=True, issues=[down]), ExitCode.RETRYABLE)
        status = cluster.wait_for("the retry noted", lambda: "retrying after" in (
            s := status_of(cluster, "guarded")).get("message", "") and s)
        assert status["phase"] == "Pending" and conditions(status)["PreflightPassed"] == ("Unknown", "Checking")
        job = cluster.get(JOBS, NS, preflight_job_name("guarded"))
        second = start_pod(cluster, job, other_than=first)
        terminate_container(cluster, NS, second, exit_code=0, message=report(baseModelRevision=BASE_SHA))
        cluster.wait_for("the training Job", lambda: cluster.get(JOBS, NS, training_job_name("guarded")))
        assert conditions(wait_phase(cluster, "Starting", "guarded"))["PreflightPassed"] == ("True", "Passed")
