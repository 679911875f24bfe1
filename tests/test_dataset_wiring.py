"""The real operator (kopf + kubetune handlers) validating Datasets against an emulated API server.

The emulated cluster's Job controller starts the validation Pod and completes the Job; the test
plays the kubelet: it runs the Pod and writes the validator's report into the container's
termination message.
"""

from __future__ import annotations

import json
from typing import Any

from kubetune.api import ValidationReport
from kubetune.builders import validation_job_name, validator_config_map_name
from support.kube_cluster import JOBS, WIRING_SETTINGS, Cluster
from support.kubelet_plays import run_container, start_pod, terminate_container

DATASETS = "kubetune.io/v1alpha1/datasets"
NS = "default"
SETTINGS = WIRING_SETTINGS


def dataset(name: str = "support-chats") -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.io/v1alpha1", "kind": "Dataset",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"source": {"configMap": {"name": "chats", "key": "data.jsonl"}}, "format": "messages"},
    }


def status_of(cluster: Cluster, name: str) -> dict[str, Any]:
    return (cluster.get(DATASETS, NS, name) or {}).get("status") or {}


def validate(cluster: Cluster, name: str, generation: int, report: ValidationReport) -> None:
    """Play the validation Pod: it runs and exits with the report as its termination message."""
    job = cluster.wait_for("the validation Job", lambda: cluster.get(JOBS, NS, validation_job_name(name, generation)))
    pod = start_pod(cluster, job)
    run_container(cluster, NS, pod)
    terminate_container(cluster, NS, pod, exit_code=0, message=json.dumps(report.to_wire()))


def test_a_valid_dataset_becomes_ready_and_a_new_spec_is_validated_again(cluster: Cluster) -> None:
    with cluster.operator(SETTINGS):
        created = cluster.apply(DATASETS, dataset())
        uid = created["metadata"]["uid"]
        cluster.wait_for("phase Validating", lambda: status_of(cluster, "support-chats").get("phase") == "Validating")

        job = cluster.get(JOBS, NS, validation_job_name("support-chats", 1))
        config_map = cluster.get("v1/configmaps", NS, validator_config_map_name("support-chats", 1))
        assert job is not None and config_map is not None
        for child in (job, config_map):
            assert [(r["kind"], r["name"], r["uid"]) for r in child["metadata"]["ownerReferences"]] == \
                [("Dataset", "support-chats", uid)]
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "example.org/trainer:test"
        assert json.loads(next(iter(config_map["data"].values())))["source"] == \
            {"configMap": {"name": "chats", "key": "data.jsonl"}}

        validate(cluster, "support-chats", 1, ValidationReport(
            outcome="Ready", rows=120, valid_rows=120, detected_format="messages", revision="sha256:abc"))
        status = cluster.wait_for("phase Ready", lambda: (s := status_of(cluster, "support-chats"))
                                  .get("phase") == "Ready" and s)
        assert status["rows"] == 120 and status["validRows"] == 120 and status["detectedFormat"] == "messages"
        assert status["source"] == "configmap:chats/data.jsonl"
        assert status["observedGeneration"] == 1
        assert {c["type"]: c["status"] for c in status["conditions"]} == {"Validated": "True", "Ready": "True"}
        cluster.wait_for("a Validated event", lambda: "Validated" in cluster.event_reasons("support-chats"))
        # Nothing to clean up on deletion, so no finalizer holds a Dataset.
        assert not cluster.get(DATASETS, NS, "support-chats")["metadata"].get("finalizers")
        assert cluster.event_reasons("support-chats").count("Validating") == 1

        # A new spec is a new generation: validated again by a Job of its own.
        cluster.patch(DATASETS, NS, "support-chats", {"spec": {"format": "auto"}})
        cluster.wait_for("phase Validating for generation 2", lambda: (s := status_of(cluster, "support-chats"))
                         .get("observedGeneration") == 2 and s["phase"] == "Validating")
        assert cluster.get(JOBS, NS, validation_job_name("support-chats", 2)) is not None
        validate(cluster, "support-chats", 2, ValidationReport(outcome="Ready", rows=120, valid_rows=120,
                                                                detected_format="messages"))
        cluster.wait_for("phase Ready again", lambda: status_of(cluster, "support-chats").get("phase") == "Ready")


def test_a_dataset_with_bad_rows_is_invalid_with_its_errors(cluster: Cluster) -> None:
    with cluster.operator(SETTINGS):
        cluster.apply(DATASETS, dataset("broken"))
        validate(cluster, "broken", 1, ValidationReport(
            outcome="Invalid", reason="DatasetInvalid", rows=10, valid_rows=7, error_count=3,
            errors=[{"row": 2, "field": "messages", "message": "no assistant turn"}]))
        status = cluster.wait_for("phase Invalid", lambda: (s := status_of(cluster, "broken"))
                                  .get("phase") == "Invalid" and s)
        assert status["reason"] == "DatasetInvalid"
        assert status["errors"] == [{"row": 2, "field": "messages", "message": "no assistant turn"}]
        assert {c["type"]: c["status"] for c in status["conditions"]} == {"Validated": "True", "Ready": "False"}
        events = cluster.wait_for("an Invalid warning", lambda: [
            e for e in cluster.events("broken") if e["reason"] == "Invalid"])
        assert events[0]["type"] == "Warning"


def test_a_dataset_whose_spec_does_not_validate_fails_without_a_job(cluster: Cluster) -> None:
    with cluster.operator(SETTINGS):
        bad = dataset("nosource")
        bad["spec"]["source"] = {}
        cluster.apply(DATASETS, bad)
        status = cluster.wait_for("phase Failed", lambda: (s := status_of(cluster, "nosource"))
                                  .get("phase") == "Failed" and s)
        assert status["reason"] == "InvalidSpec"
        assert "spec.source" in status["message"]
        assert cluster.list(JOBS, NS) == []
