"""The real operator (kopf + kubetune handlers) running TuningJobs against an emulated API server.

The emulated cluster's Job controller creates the Job's Pods and keeps the Job's status, as a
real one does; the test plays the scheduler and the kubelet: it schedules and runs the Pods,
writes trainer log lines (served at `pods/{name}/log`) and ends the container with a
termination message (a validation report for Datasets). It asserts on the objects the operator
wrote: Jobs, ConfigMaps, status, Events.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kubetune.api import Dataset, ModelResult, TrainerResult, TrainingMetrics, TuningJob, ValidationReport
from kubetune.api.progress import ProgressEvent, Stage, StageEvent, format_event
from kubetune.builders import (
    build_trainer_config_map,
    owner_reference,
    resolve_trainer_config,
    trainer_config_map_name,
    training_job_name,
    validation_job_name,
)
from kubetune.metrics import OperatorMetrics
from support.kube_cluster import JOBS, WIRING_SETTINGS, Cluster
from support.kubelet_plays import run_container, start_pod, terminate_container, unschedulable, wait_container

TUNINGJOBS = "kubetune.io/v1alpha1/tuningjobs"
DATASETS = "kubetune.io/v1alpha1/datasets"
NS = "default"
TOKEN = "hf_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3"
SETTINGS = WIRING_SETTINGS


# --- manifests and plays ------------------------------------------------------------------------------------------

def tuningjob(name: str = "support-bot", dataset: str = "support-chats", **spec: Any) -> dict[str, Any]:
    """A run straight to its training Job: the preflight before it has scenarios of its own
    (test_preflight_wiring.py)."""
    spec.setdefault("guardrails", {"preflight": False})
    return {
        "apiVersion": "kubetune.io/v1alpha1", "kind": "TuningJob",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "baseModel": {"repo": "mistralai/Ministral-8B-Instruct-2410"},
            "datasets": {"train": [{"dataset": dataset}]},
            "output": {"repo": "my-org/support-bot"},
            "hfTokenSecretRef": {"name": "hf-token"},
            **spec,
        },
    }


def ready_dataset(cluster: Cluster, name: str = "support-chats", outcome: str = "Ready", generation: int = 1) -> None:
    """Apply a Dataset (or, for a later generation, edit it) and play its validation to `outcome`."""
    if generation == 1:
        cluster.apply(DATASETS, {
            "apiVersion": "kubetune.io/v1alpha1", "kind": "Dataset", "metadata": {"name": name, "namespace": NS},
            "spec": {"source": {"hf": {"repo": "my-org/support-chats"}}, "format": "messages"},
        })
    else:
        cluster.patch(DATASETS, NS, name, {"spec": {"source": {"hf": {"repo": "my-org/support-chats",
                                                                        "revision": f"v{generation}"}}}})
    job = cluster.wait_for("the validation Job",
                           lambda: cluster.get(JOBS, NS, validation_job_name(name, generation)))
    pod = start_pod(cluster, job)
    run_container(cluster, NS, pod)
    report = ValidationReport(outcome=outcome, rows=50, valid_rows=50 if outcome == "Ready" else 40,
                              revision="0123abcd" * 5, detected_format="messages",
                              reason=None if outcome == "Ready" else "DatasetInvalid",
                              message=None if outcome == "Ready" else "10 rows have no assistant turn")
    terminate_container(cluster, NS, pod, exit_code=0, message=json.dumps(report.to_wire()))
    cluster.wait_for(f"Dataset {outcome}", lambda: dataset_phase(cluster, name) == outcome)


def dataset_phase(cluster: Cluster, name: str) -> str | None:
    return ((cluster.get(DATASETS, NS, name) or {}).get("status") or {}).get("phase")


def status_of(cluster: Cluster, name: str = "support-bot") -> dict[str, Any]:
    return (cluster.get(TUNINGJOBS, NS, name) or {}).get("status") or {}


def wait_phase(cluster: Cluster, phase: str, name: str = "support-bot") -> dict[str, Any]:
    return cluster.wait_for(f"TuningJob {name} in phase {phase} (now {status_of(cluster, name).get('phase')})",
                            lambda: (s := status_of(cluster, name)).get("phase") == phase and s)


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions", [])}


def training_job(cluster: Cluster, name: str = "support-bot") -> dict[str, Any]:
    return cluster.wait_for("the training Job", lambda: cluster.get(JOBS, NS, training_job_name(name)))


def progress_log(step: int, total: int = 100, loss: float = 1.5) -> str:
    event = ProgressEvent(step=step, total_steps=total, epoch=step / total * 3, loss=loss, learning_rate=1e-4,
                          tokens_per_second=2500.0, eta_seconds=(total - step) * 2)
    return format_event(event) + "\n"


def succeeded_result() -> str:
    result = TrainerResult(
        status="Succeeded",
        model=ModelResult(repo="my-org/support-bot", revision="f" * 40, url="https://huggingface.co/my-org/support-bot"),
        metrics=TrainingMetrics(train_loss=0.9, eval_loss=1.1, base_eval_loss=1.9, trained_tokens=250_000, steps=100),
    )
    return json.dumps(result.to_wire())


# --- the scenarios ------------------------------------------------------------------------------------------------

def test_a_run_goes_from_data_to_a_published_model(cluster: Cluster) -> None:
    metrics = OperatorMetrics()
    with cluster.operator(SETTINGS, metrics):
        ready_dataset(cluster)
        tj_uid = cluster.apply(TUNINGJOBS, tuningjob())["metadata"]["uid"]
        job = training_job(cluster)
        config_map = cluster.get("v1/configmaps", NS, trainer_config_map_name("support-bot"))
        assert config_map is not None
        for child in (job, config_map):
            refs = child["metadata"]["ownerReferences"]
            owners = [(r["kind"], r["name"], r["uid"], r.get("controller")) for r in refs]
            assert owners == [("TuningJob", "support-bot", tj_uid, True)]
        # The Dataset reference is resolved to its source, pinned to the validated revision.
        config = json.loads(next(iter(config_map["data"].values())))
        assert config["spec"]["datasets"]["train"][0]["source"]["hf"]["revision"] == "0123abcd" * 5
        assert config["allowPrivateUrls"] is SETTINGS.allow_private_urls  # the operator's URL policy travels along
        # The token reaches the container from the Secret, never through the operator.
        env = job["spec"]["template"]["spec"]["containers"][0]["env"]
        assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}} in env

        status = wait_phase(cluster, "Starting")
        assert status["jobName"] == training_job_name("support-bot") and status["observedGeneration"] == 1

        pod = start_pod(cluster, job)
        cluster.set_log(NS, pod, f"loading model\nlogged in with token {TOKEN}\n" + progress_log(10) + progress_log(50))
        run_container(cluster, NS, pod)
        status = cluster.wait_for("progress at step 50", lambda: (s := status_of(cluster)).get(
            "progress", {}).get("step") == 50 and s)
        assert status["phase"] == "Running" and status["startTime"]
        assert status["progress"]["percent"] == 50 and status["progress"]["loss"] == 1.5
        assert status["progress"]["tokensPerSecond"] == 2500.0
        assert "logged in with token ***" in status["logTail"] and TOKEN not in json.dumps(status)
        # The log is read bounded, from the trainer container.
        _, params = cluster.requests("GET", f"/pods/{pod}/log")[-1]
        assert params["container"] == "trainer" and int(params["tailLines"]) <= 1000 and int(params["sinceSeconds"]) > 0
        assert metrics.registry.get_sample_value("kubetune_tuningjob_progress_percent",
                                                 {"namespace": NS, "name": "support-bot"}) == 50
        # Nothing moves, so nothing is written, though the log is read every second.
        patches = len(cluster.requests("PATCH", "/tuningjobs/support-bot/status"))
        reads = len(cluster.requests("GET", f"/pods/{pod}/log"))
        cluster.wait_for("two more log reads", lambda: len(cluster.requests("GET", f"/pods/{pod}/log")) >= reads + 2)
        assert len(cluster.requests("PATCH", "/tuningjobs/support-bot/status")) == patches

        cluster.set_log(NS, pod, progress_log(100, loss=0.9) + format_event(
            StageEvent(stage=Stage.PUBLISHING, message="pushing to my-org/support-bot")) + "\n")
        wait_phase(cluster, "Publishing")

        terminate_container(cluster, NS, pod, exit_code=0, message=succeeded_result())
        status = wait_phase(cluster, "Succeeded")
        assert status["result"] == {"repo": "my-org/support-bot", "revision": "f" * 40,
                                    "url": "https://huggingface.co/my-org/support-bot"}
        assert status["metrics"]["evalLoss"] == 1.1 and status["metrics"]["baseEvalLoss"] == 1.9
        assert status["progress"]["percent"] == 100 and status["completionTime"]
        assert conditions(status)["Succeeded"][0] == "True"
        assert conditions(status)["ModelPublished"] == ("True", "Pushed")
        assert conditions(status)["Failed"][0] == "False"
        reasons = cluster.wait_for("the Succeeded event", lambda: (r := cluster.event_reasons("support-bot"))
                                   and "Succeeded" in r and r)
        for reason in ("JobCreated", "Started", "Publishing", "Published", "Succeeded"):
            assert reasons.count(reason) == 1, reasons
        assert "Progress" in reasons  # milestones (10%, 50%) on the way
        assert metrics.registry.get_sample_value("kubetune_tuningjobs", {"phase": "Succeeded"}) == 1
        assert metrics.registry.get_sample_value("kubetune_tuningjobs", {"phase": "Running"}) == 0
        assert metrics.registry.get_sample_value("kubetune_datasets", {"phase": "Ready"}) == 1
        assert (metrics.registry.get_sample_value("kubetune_reconcile_duration_seconds_count", {"kind": "TuningJob"})
                or 0) > 0
        # The operator never touches Secrets: the token reaches the Pod through secretKeyRef.
        assert [r for method in ("GET", "POST", "PATCH", "PUT", "DELETE")
                for r in cluster.requests(method, "/secrets")] == []
        # A finished run lets go of kopf's finalizer: deleting it never waits for the operator.
        cluster.wait_for("no finalizer", lambda: not (cluster.get(TUNINGJOBS, NS, "support-bot") or {})
                         .get("metadata", {}).get("finalizers"))


def test_a_run_waits_for_a_missing_dataset_then_starts(cluster: Cluster) -> None:
    # A long refresh interval: neither the timer nor kopf's retry can be what starts the run.
    with cluster.operator(replace(SETTINGS, status_refresh_seconds=120)):
        cluster.apply(TUNINGJOBS, tuningjob())
        status = wait_phase(cluster, "WaitingForData")
        assert conditions(status)["DatasetsReady"] == ("False", "DatasetNotFound")
        assert "support-chats" in status["message"]
        warnings = cluster.wait_for("a WaitingForData warning", lambda: [
            e for e in cluster.events("support-bot") if e["reason"] == "WaitingForData"])
        assert warnings[0]["type"] == "Warning"
        assert cluster.get(JOBS, NS, training_job_name("support-bot")) is None

        ready_dataset(cluster)
        # Noticed through the Dataset becoming Ready, not a retry a refresh interval later.
        cluster.wait_for("the training Job", lambda: cluster.get(JOBS, NS, training_job_name("support-bot")), 5)
        status = wait_phase(cluster, "Starting")
        assert conditions(status)["DatasetsReady"][0] == "True"


def test_an_invalid_spec_fails_at_once_without_a_job(cluster: Cluster) -> None:
    with cluster.operator(SETTINGS):
        cluster.apply(TUNINGJOBS, tuningjob(hyperparameters={"learningRate": "fast"}))
        status = wait_phase(cluster, "Failed")
        assert status["error"]["reason"] == "InvalidSpec"
        assert "spec.hyperparameters.learningRate" in status["error"]["message"]
        warnings = cluster.wait_for("a Failed warning", lambda: [
            e for e in cluster.events("support-bot") if e["reason"] == "Failed"])
        assert warnings[0]["type"] == "Warning"
        assert cluster.list(JOBS, NS) == [] and cluster.list("v1/configmaps", NS) == []
        # The operator keeps no state of its own on the object: no kopf annotations, no finalizer.
        meta = (cluster.get(TUNINGJOBS, NS, "support-bot") or {}).get("metadata", {})
        assert not meta.get("annotations") and not meta.get("finalizers")

        # A corrected spec is still this run: it leaves Failed and goes on (here: to wait for data).
        cluster.patch(TUNINGJOBS, NS, "support-bot", {"spec": {"hyperparameters": {"learningRate": 0.0002}}})
        status = wait_phase(cluster, "WaitingForData")
        assert "error" not in status and status["observedGeneration"] == 2


def test_an_invalid_dataset_fails_the_run_with_its_reason(cluster: Cluster) -> None:
    with cluster.operator(SETTINGS):
        ready_dataset(cluster, outcome="Invalid")
        cluster.apply(TUNINGJOBS, tuningjob())
        status = wait_phase(cluster, "Failed")
        assert status["error"]["reason"] == "DatasetInvalid" and "no assistant turn" in status["error"]["message"]
        assert conditions(status)["DatasetsReady"] == ("False", "DatasetInvalid")
        assert cluster.get(JOBS, NS, training_job_name("support-bot")) is None

        # Mended data is still this run: once the Dataset validates, the run starts.
        ready_dataset(cluster, outcome="Ready", generation=2)
        training_job(cluster)
        assert "error" not in wait_phase(cluster, "Starting")


@pytest.mark.parametrize(("play", "reason"), [
    ("oom", "OOMKilled"),
    ("image", "ImagePullBackOff"),
    ("unschedulable", "Unschedulable"),
])
def test_pod_trouble_is_reported(cluster: Cluster, play: str, reason: str) -> None:
    with cluster.operator(SETTINGS):
        ready_dataset(cluster)
        cluster.apply(TUNINGJOBS, tuningjob())
        job = training_job(cluster)
        pod = start_pod(cluster, job)
        if play == "oom":
            # Every attempt the Job's backoffLimit allows is killed; then the Job fails.
            for attempt in range(job["spec"]["backoffLimit"] + 1):
                if attempt:
                    pod = start_pod(cluster, job, other_than=pod)
                run_container(cluster, NS, pod)
                terminate_container(cluster, NS, pod, exit_code=137, reason="OOMKilled")
            status = wait_phase(cluster, "Failed")
            assert status["error"]["reason"] == "OOMKilled"
            assert "perDeviceBatchSize" in status["error"]["message"]
        else:
            if play == "image":
                wait_container(cluster, NS, pod, "ImagePullBackOff", 'Back-off pulling image "example.org/trainer"')
            else:
                unschedulable(cluster, NS, pod, "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")
            status = cluster.wait_for(f"Running condition {reason}", lambda: (s := status_of(cluster))
                                      .get("conditions") and conditions(s)["Running"][1] == reason and s)
            assert status["phase"] == "Starting"
        event = cluster.wait_for(f"a {reason} warning", lambda: [
            e for e in cluster.events("support-bot")
            if e["type"] == "Warning" and reason in (e["reason"] + e["message"])])
        assert event


def test_a_failed_attempt_is_retried_by_the_job_and_the_run_goes_on(cluster: Cluster) -> None:
    with cluster.operator(SETTINGS):
        ready_dataset(cluster)
        cluster.apply(TUNINGJOBS, tuningjob())
        job = training_job(cluster)
        first = start_pod(cluster, job)
        run_container(cluster, NS, first)
        wait_phase(cluster, "Running")
        terminate_container(cluster, NS, first, exit_code=1, message="CUDA error: an illegal memory access")
        # The Job controller replaces the Pod after its back-off; meanwhile the run says so.
        status = cluster.wait_for("Running condition Retrying", lambda: (s := status_of(cluster))
                                  .get("conditions") and conditions(s)["Running"][1] == "Retrying" and s)
        assert status["phase"] == "Starting" and "attempt 1 failed" in status["message"]
        second = start_pod(cluster, job, other_than=first)
        cluster.set_log(NS, second, progress_log(100, loss=0.9))
        run_container(cluster, NS, second)
        terminate_container(cluster, NS, second, exit_code=0, message=succeeded_result())
        status = wait_phase(cluster, "Succeeded")
        assert status["result"]["revision"] == "f" * 40 and "error" not in status


def test_suspend_and_resume_reach_the_job_and_spec_edits_are_refused(cluster: Cluster) -> None:
    with cluster.operator(SETTINGS):
        ready_dataset(cluster)
        cluster.apply(TUNINGJOBS, tuningjob())
        job = training_job(cluster)
        run_container(cluster, NS, start_pod(cluster, job))
        wait_phase(cluster, "Running")

        cluster.patch(TUNINGJOBS, NS, "support-bot", {"spec": {"suspend": True}})
        cluster.wait_for("the Job suspended", lambda: cluster.get(JOBS, NS, job["metadata"]["name"])["spec"]
                         .get("suspend") is True)
        status = wait_phase(cluster, "Suspended")
        assert "SpecChangeRejected" not in conditions(status)

        cluster.patch(TUNINGJOBS, NS, "support-bot", {"spec": {"suspend": False}})
        cluster.wait_for("the Job resumed", lambda: cluster.get(JOBS, NS, job["metadata"]["name"])["spec"]
                         .get("suspend") is False)
        cluster.wait_for("a Resumed event", lambda: "Resumed" in cluster.event_reasons("support-bot"))

        cluster.patch(TUNINGJOBS, NS, "support-bot", {"spec": {"hyperparameters": {"learningRate": 0.001}}})
        status = cluster.wait_for("SpecChangeRejected", lambda: (s := status_of(cluster)).get("conditions")
                                  and conditions(s).get("SpecChangeRejected", ("", ""))[0] == "True" and s)
        assert status["observedGeneration"] == 4
        assert cluster.get(JOBS, NS, job["metadata"]["name"])["metadata"]["uid"] == job["metadata"]["uid"]
        cluster.wait_for("a SpecChangeRejected warning",
                         lambda: "SpecChangeRejected" in cluster.event_reasons("support-bot"))


def test_deleting_a_running_job_is_not_blocked(cluster: Cluster) -> None:
    with cluster.operator(SETTINGS):
        ready_dataset(cluster)
        cluster.apply(TUNINGJOBS, tuningjob())
        run_container(cluster, NS, start_pod(cluster, training_job(cluster)))
        wait_phase(cluster, "Running")
        cluster.delete(TUNINGJOBS, NS, "support-bot")
        # The Job and ConfigMap go with it through their ownerReferences (checked above; the
        # emulator has no garbage collector); the TuningJob itself must not hang on a finalizer.
        cluster.wait_for("the TuningJob gone", lambda: cluster.get(TUNINGJOBS, NS, "support-bot") is None)


def test_a_running_job_can_be_deleted_while_the_operator_is_down(cluster: Cluster) -> None:
    with cluster.operator(SETTINGS):
        ready_dataset(cluster)
        cluster.apply(TUNINGJOBS, tuningjob())
        pod = start_pod(cluster, training_job(cluster))
        cluster.set_log(NS, pod, progress_log(10))
        run_container(cluster, NS, pod)
        cluster.wait_for("progress at step 10", lambda: status_of(cluster).get("progress", {}).get("step") == 10)
        # Progress is polled from the log without kopf's timers, so nothing holds a finalizer.
        assert not cluster.get(TUNINGJOBS, NS, "support-bot")["metadata"].get("finalizers")
    cluster.delete(TUNINGJOBS, NS, "support-bot")
    assert cluster.get(TUNINGJOBS, NS, "support-bot") is None


def test_the_log_is_polled_only_while_the_trainer_runs(cluster: Cluster) -> None:
    with cluster.operator(SETTINGS):
        ready_dataset(cluster)
        cluster.apply(TUNINGJOBS, tuningjob())
        job = training_job(cluster)
        pod = start_pod(cluster, job)
        wait_phase(cluster, "Starting")
        cluster.set_log(NS, pod, progress_log(20))
        run_container(cluster, NS, pod)
        cluster.wait_for("two log reads while Running", lambda: len(cluster.requests("GET", f"/pods/{pod}/log")) >= 2)
        terminate_container(cluster, NS, pod, exit_code=0, message=succeeded_result())
        wait_phase(cluster, "Succeeded")
        cluster.wait_quiet()
        reads, passes = len(cluster.requests("GET", f"/pods/{pod}/log")), len(cluster.requests("GET", "/jobs/"))
        cluster.wait_quiet(quiet=2.5, timeout=4)  # more than two refresh intervals
        assert len(cluster.requests("GET", f"/pods/{pod}/log")) == reads
        assert len(cluster.requests("GET", "/jobs/")) == passes


def test_an_operator_restart_mid_run_creates_nothing_twice(cluster: Cluster) -> None:
    with cluster.operator(SETTINGS):
        ready_dataset(cluster)
        cluster.apply(TUNINGJOBS, tuningjob())
        job = training_job(cluster)
        pod = start_pod(cluster, job)
        cluster.set_log(NS, pod, progress_log(30))
        run_container(cluster, NS, pod)
        cluster.wait_for("progress at step 30", lambda: status_of(cluster).get("progress", {}).get("step") == 30)

    # While no operator runs, the run finishes (and the Job controller completes the Job).
    cluster.set_log(NS, pod, progress_log(100, loss=0.9))
    terminate_container(cluster, NS, pod, exit_code=0, message=succeeded_result())

    with cluster.operator(SETTINGS):
        status = wait_phase(cluster, "Succeeded")
        assert status["result"]["revision"] == "f" * 40
        jobs = [j for j in cluster.list(JOBS, NS) if j["metadata"]["name"] == training_job_name("support-bot")]
        assert len(jobs) == 1 and jobs[0]["metadata"]["uid"] == job["metadata"]["uid"]
        reasons = cluster.wait_for("the Succeeded event", lambda: (r := cluster.event_reasons("support-bot"))
                                   and "Succeeded" in r and r)
        assert reasons.count("JobCreated") == 1 and reasons.count("Started") == 1


def test_a_restart_between_config_map_and_job_creation_finishes_the_work(cluster: Cluster) -> None:
    with cluster.operator(SETTINGS):
        ready_dataset(cluster)
    # As if an operator had died right after creating the ConfigMap: the next one must take the
    # existing ConfigMap as its own (AlreadyExists is success) and go on to create the Job.
    body = cluster.apply(TUNINGJOBS, tuningjob())
    tj = TuningJob.model_validate(body)
    datasets = {"support-chats": Dataset.model_validate(cluster.get(DATASETS, NS, "support-chats"))}
    config_map = build_trainer_config_map(tj, resolve_trainer_config(tj, datasets), owner_reference(body))
    existing = cluster.apply("v1/configmaps", config_map)

    with cluster.operator(SETTINGS):
        training_job(cluster)
        wait_phase(cluster, "Starting")
        name = config_map["metadata"]["name"]
        uids = [c["metadata"]["uid"] for c in cluster.list("v1/configmaps", NS) if c["metadata"]["name"] == name]
        assert uids == [existing["metadata"]["uid"]]
        assert len(cluster.requests("POST", "/jobs")) == 1 + 1  # the validation Job, then the training Job


def test_an_api_error_mid_pass_is_retried_without_creating_twice(cluster: Cluster) -> None:
    with cluster.operator(SETTINGS):  # the retry comes from the work queue, after a 1 s backoff
        ready_dataset(cluster)
        posts = len(cluster.requests("POST", "/jobs"))
        cluster.fail_next("POST", "/jobs")
        cluster.apply(TUNINGJOBS, tuningjob())
        job = training_job(cluster)
        status = wait_phase(cluster, "Starting")
        assert status["jobName"] == job["metadata"]["name"]
        assert len(cluster.requests("POST", "/jobs")) == posts + 2  # the failed one and the retry
        # The first pass's ConfigMap was taken as the run's own, not made again.
        name = trainer_config_map_name("support-bot")
        assert [c["metadata"]["name"] for c in cluster.list("v1/configmaps", NS)].count(name) == 1
        assert cluster.event_reasons("support-bot").count("JobCreated") == 1


def test_a_new_run_costs_one_pass_and_its_own_echoes_are_dropped(cluster: Cluster) -> None:
    with cluster.operator(SETTINGS):
        ready_dataset(cluster)
        # What the operator alone does for a new run: no Pod, no Job status moves after this.
        cluster.stop_job_controller()
        cluster.wait_quiet()
        before = {verb: len(cluster.requests(verb, "/namespaces/")) for verb in ("GET", "POST", "PATCH")}
        cluster.apply(TUNINGJOBS, tuningjob())
        wait_phase(cluster, "Starting")
        cluster.wait_quiet(quiet=1.5, timeout=5)  # more than a refresh interval
        after = {verb: len(cluster.requests(verb, "/namespaces/")) for verb in ("GET", "POST", "PATCH")}
        # Create the work volume claim, the ConfigMap and the Job; patch the status; post JobCreated.
        # The Dataset is read from the operator's cache, and neither the echo of that create nor
        # that of the status patch costs another request.
        assert {verb: after[verb] - before[verb] for verb in after} == {"GET": 0, "POST": 4, "PATCH": 1}


def test_the_operator_imports_no_training_libraries() -> None:
    code = ("import sys, kubetune.handlers.main, kubetune.cli; "
            "print([m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'transformers', 'trl', 'peft', 'datasets', 'accelerate')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http_get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return None


def test_kubetune_operator_serves_health_and_metrics_and_exits_on_sigterm(cluster: Cluster, tmp_path: Path) -> None:
    metrics_port, health_port = _free_port(), _free_port()
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig(tmp_path / "kubeconfig")),
           "KUBETUNE_METRICS_PORT": str(metrics_port), "KUBETUNE_HEALTH_PORT": str(health_port),
           "KUBETUNE_TRAINER_IMAGE": "example.org/trainer:cli"}
    process = subprocess.Popen([sys.executable, "-m", "kubetune", "operator"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        cluster.apply(DATASETS, {
            "apiVersion": "kubetune.io/v1alpha1", "kind": "Dataset", "metadata": {"name": "chats", "namespace": NS},
            "spec": {"source": {"url": {"url": "https://example.org/chats.jsonl"}}},
        })
        job = cluster.wait_for("the validation Job", lambda: cluster.get(JOBS, NS, validation_job_name("chats", 1)),
                               timeout=30)
        assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "example.org/trainer:cli"
        cluster.wait_for("/healthz answering", lambda: _http_get(f"http://127.0.0.1:{health_port}/healthz"))
        exposition = cluster.wait_for("the Dataset counted in /metrics", lambda: (
            text := _http_get(f"http://127.0.0.1:{metrics_port}/metrics")) and
            'kubetune_datasets{phase="Validating"} 1.0' in text and text)
        assert "kubetune_reconcile_duration_seconds_bucket" in exposition
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output[-3000:]
