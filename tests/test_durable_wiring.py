"""Durable runs through the real operator and the emulated cluster's Job controller: the work
volume claim is created (owned by the TuningJob, or kept), the Job mounts it, a trainer stopped by
SIGTERM is replaced without counting a failure, and the replacement's resume reaches the status
and an Event; suspend then resume does the same; a claim kubetune did not make is never mounted."""

from __future__ import annotations

import json
from typing import Any

from test_operator_wiring import (
    NS,
    SETTINGS,
    TUNINGJOBS,
    ready_dataset,
    status_of,
    succeeded_result,
    training_job,
    tuningjob,
    wait_phase,
)

from kubetune.api import TrainerResult, TuningJobSpec, run_hash
from kubetune.api.progress import ProgressEvent, format_event
from kubetune.builders import trainer_config_map_name, work_volume_claim_name
from support.kube_cluster import JOBS, Cluster
from support.kubelet_plays import run_container, start_pod, terminate_container

CLAIMS = "v1/persistentvolumeclaims"


def resumed_log(step: int, resumed_from: int | None, attempt: int, total: int = 100) -> str:
    """What a trainer prints: at once on resuming (no loss yet), then per logging step."""
    lines = [ProgressEvent(step=resumed_from, total_steps=total, resumed_from_step=resumed_from, attempt=attempt)] \
        if resumed_from is not None else []
    lines.append(ProgressEvent(step=step, total_steps=total, loss=1.1, resumed_from_step=resumed_from,
                               attempt=attempt))
    return "".join(format_event(line) + "\n" for line in lines)


def interrupted_result(step: int) -> str:
    return json.dumps(TrainerResult(status="Failed", reason="Interrupted", retryable=True,
                                    message=f"stopped by SIGTERM at step {step}; a checkpoint is saved").to_wire())


def pod_spec(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


def progress(cluster: Cluster) -> dict[str, Any]:
    found: dict[str, Any] = status_of(cluster).get("progress") or {}
    return found


def test_the_work_volume_is_created_and_mounted_and_a_stopped_trainer_resumes_uncounted(cluster: Cluster) -> None:
    with cluster.operator(SETTINGS):
        ready_dataset(cluster)
        tj_uid = cluster.apply(TUNINGJOBS, tuningjob())["metadata"]["uid"]
        job = training_job(cluster)
        claim_name = work_volume_claim_name("support-bot")
        claim = cluster.get(CLAIMS, NS, claim_name)
        assert claim is not None, "the claim exists by the time the Job does"
        assert [(r["kind"], r["name"], r["uid"], r["controller"]) for r in claim["metadata"]["ownerReferences"]] == [
            ("TuningJob", "support-bot", tj_uid, True)]  # the garbage collector deletes it with the TuningJob
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert claim["spec"]["resources"]["requests"]["storage"] == SETTINGS.work_volume_size
        # The Job's Pod mounts it writable, gets time to checkpoint, and is replaced only once gone.
        volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
        mounted = [v for v in volumes.values() if v.get("persistentVolumeClaim", {}).get("claimName") == claim_name]
        assert [v["persistentVolumeClaim"]["readOnly"] for v in mounted] == [False]
        assert pod_spec(job)["terminationGracePeriodSeconds"] == SETTINGS.trainer_termination_grace_seconds
        assert job["spec"]["podReplacementPolicy"] == "Failed"
        config_map = cluster.get("v1/configmaps", NS, trainer_config_map_name("support-bot"))
        assert config_map is not None
        config = json.loads(next(iter(config_map["data"].values())))
        assert config["workDir"] == f"/mnt/pvc/{claim_name}" and config["run"]["uid"] == tj_uid
        run_folder = f"{tj_uid}-{config['run']['hash']}"
        assert config["run"]["hash"] == run_hash(TuningJobSpec.model_validate(config["spec"]))
        status = wait_phase(cluster, "Starting")
        assert status["workDir"] == f"pvc:{claim_name}/runs/{run_folder}"

        first = start_pod(cluster, job)
        cluster.set_log(NS, first, resumed_log(40, None, 1))
        run_container(cluster, NS, first)
        cluster.wait_for("progress at step 40", lambda: progress(cluster).get("step") == 40)
        assert "resumedFromStep" not in progress(cluster)

        # Preempted: SIGTERM, the trainer saves checkpoint 40 and exits 130 (Interrupted).
        terminate_container(cluster, NS, first, exit_code=130, message=interrupted_result(40))
        status = cluster.wait_for("the stop reported", lambda: (s := status_of(cluster)).get("message", "")
                                  .startswith("the trainer was stopped and saved a checkpoint") and s)
        assert status["phase"] == "Starting"
        second = start_pod(cluster, job, other_than=first)
        cluster.set_log(NS, second, resumed_log(50, 40, 2))
        run_container(cluster, NS, second)
        cluster.wait_for("the resumed progress", lambda: progress(cluster).get("step") == 50)
        assert (progress(cluster)["resumedFromStep"], progress(cluster)["attempt"]) == (40, 2)
        messages = cluster.wait_for("the ResumedFromCheckpoint event", lambda: [
            e["message"] for e in cluster.events("support-bot") if e["reason"] == "ResumedFromCheckpoint"])
        assert messages == ["Resumed from checkpoint step 40 (attempt 2)"]
        # podFailurePolicy Ignore: the stop did not count against backoffLimit.
        assert int((cluster.get(JOBS, NS, job["metadata"]["name"]) or {}).get("status", {}).get("failed") or 0) == 0

        terminate_container(cluster, NS, second, exit_code=0, message=succeeded_result())
        status = wait_phase(cluster, "Succeeded")
        assert status["workDir"] == f"pvc:{claim_name}/runs/{run_folder}"
        assert status["progress"]["resumedFromStep"] == 40


def test_suspend_then_resume_continues_from_the_checkpoint(cluster: Cluster) -> None:
    with cluster.operator(SETTINGS):
        ready_dataset(cluster)
        cluster.apply(TUNINGJOBS, tuningjob())
        job = training_job(cluster)
        first = start_pod(cluster, job)
        cluster.set_log(NS, first, resumed_log(60, None, 1))
        run_container(cluster, NS, first)
        cluster.wait_for("progress at step 60", lambda: progress(cluster).get("step") == 60)

        cluster.patch(TUNINGJOBS, NS, "support-bot", {"spec": {"suspend": True}})
        wait_phase(cluster, "Suspended")  # the Job controller deleted the Pod; its trainer saved step 60
        cluster.patch(TUNINGJOBS, NS, "support-bot", {"spec": {"suspend": False}})
        second = start_pod(cluster, job, other_than=first)
        cluster.set_log(NS, second, resumed_log(70, 60, 2))
        run_container(cluster, NS, second)
        cluster.wait_for("the resumed progress", lambda: progress(cluster).get("step") == 70)
        assert progress(cluster)["resumedFromStep"] == 60
        reasons = cluster.wait_for("the events", lambda: (r := cluster.event_reasons("support-bot"))
                                   and "ResumedFromCheckpoint" in r and r)
        assert "Resumed" in reasons and reasons.count("ResumedFromCheckpoint") == 1


def test_claims_the_spec_names_or_keeps_and_a_claim_kubetune_did_not_make(cluster: Cluster) -> None:
    with cluster.operator(SETTINGS):
        ready_dataset(cluster)
        # A claim of the name kubetune would use, made by someone else: never mounted.
        cluster.apply(CLAIMS, {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                               "metadata": {"name": work_volume_claim_name("taken"), "namespace": NS},
                               "spec": {"accessModes": ["ReadWriteOnce"],
                                        "resources": {"requests": {"storage": "1Gi"}}}})
        cluster.apply(TUNINGJOBS, tuningjob("taken"))
        status = wait_phase(cluster, "Failed", "taken")
        assert status["error"]["reason"] == "InvalidSpec"
        assert "WorkVolumeConflict" in status["error"]["message"]
        assert "spec.workVolume.claimName: taken-work" in status["error"]["message"]
        assert cluster.get(JOBS, NS, "taken-train") is None

        # retainPolicy Retain: no owner, so the claim outlives the TuningJob.
        cluster.apply(TUNINGJOBS, tuningjob("kept", workVolume={"retainPolicy": "Retain", "size": "80Gi"}))
        training_job(cluster, "kept")
        kept = cluster.get(CLAIMS, NS, work_volume_claim_name("kept"))
        assert kept is not None and "ownerReferences" not in kept["metadata"]
        assert kept["spec"]["resources"]["requests"]["storage"] == "80Gi"

        # An existing claim named in the spec: used as it is, nothing created.
        cluster.apply(TUNINGJOBS, tuningjob("shared", workVolume={"claimName": "team-scratch", "path": "kubetune"}))
        job = training_job(cluster, "shared")
        assert cluster.get(CLAIMS, NS, work_volume_claim_name("shared")) is None
        claims = [v["persistentVolumeClaim"] for v in pod_spec(job)["volumes"] if "persistentVolumeClaim" in v]
        assert claims == [{"claimName": "team-scratch", "readOnly": False}]
        assert wait_phase(cluster, "Starting", "shared")["workDir"].startswith("pvc:team-scratch/kubetune/runs/")
