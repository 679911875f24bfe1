"""The wiring scenario on a real cluster (kind, k3d, a GPU cluster): opt-in.

    KUBETUNE_TEST_KUBECONFIG=~/.kube/config \\
    KUBETUNE_TEST_TRAINER_IMAGE=ghcr.io/kubetune/trainer:dev \\
        pytest -m cluster tests/test_cluster_e2e.py

The operator runs in this process (the same registry as the wiring tests) against the
cluster; the real Job controller and kubelet run the validation and training Pods from the
trainer image, which the cluster must be able to pull (for kind: `kind load docker-image`).
The run trains a tiny scratch model on CPU from a ConfigMap and writes it to a PVC, so it
needs a default StorageClass but no GPU and no Hub. Everything lives in a fresh namespace
that is deleted afterwards. The CRDs are applied from crds/ if the cluster lacks them.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from kubetune.api.common import GROUP, VERSION
from kubetune.builders import trainer_config_map_name, training_job_name
from kubetune.settings import Settings
from support.kube_cluster import running_operator, wait_for

pytestmark = pytest.mark.cluster

KUBECONFIG = os.environ.get("KUBETUNE_TEST_KUBECONFIG")
TRAINER_IMAGE = os.environ.get("KUBETUNE_TEST_TRAINER_IMAGE", "ghcr.io/kubetune/trainer:0.1.0")
CRDS = Path(__file__).resolve().parent.parent / "crds"
T = TypeVar("T")

if not KUBECONFIG:
    pytest.skip("set KUBETUNE_TEST_KUBECONFIG to run against a real cluster", allow_module_level=True)

kubernetes = pytest.importorskip("kubernetes")


@pytest.fixture(scope="module")
def api() -> Any:
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=KUBECONFIG, client_configuration=configuration)
    return kubernetes.client.ApiClient(configuration)


@pytest.fixture
def namespace(api: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("KUBECONFIG", str(KUBECONFIG))
    extensions = kubernetes.client.ApiextensionsV1Api(api)
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        try:
            extensions.create_custom_resource_definition(crd)
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:
                raise
    core = kubernetes.client.CoreV1Api(api)
    name = f"kubetune-e2e-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        core.delete_namespace(name)


def _data_rows() -> str:
    rows = []
    for i in range(60):
        rows.append(json.dumps({"messages": [
            {"role": "user", "content": f"What is {i} plus {i}?"},
            {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."},
        ]}))
    return "\n".join(rows) + "\n"


def test_a_run_on_a_real_cluster(api: Any, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(api)
    batch = kubernetes.client.BatchV1Api(api)
    custom = kubernetes.client.CustomObjectsApi(api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "sums"}, "data": {"data.jsonl": _data_rows()}})
    core.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": "models"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    })

    def get(plural: str, name: str) -> dict[str, Any]:
        return dict(custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name))

    def phase(plural: str, name: str) -> str | None:
        return (get(plural, name).get("status") or {}).get("phase")

    settings = Settings(metrics_port=0, health_port=0, status_refresh_seconds=5, trainer_image=TRAINER_IMAGE,
                        namespaces=[namespace], trainer_cpu="1", trainer_memory="2Gi")
    with running_operator(settings):
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "datasets", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "Dataset", "metadata": {"name": "sums"},
            "spec": {"source": {"configMap": {"name": "sums", "key": "data.jsonl"}}, "format": "messages"},
        })
        wait_for("Dataset Ready", lambda: phase("datasets", "sums") in ("Ready", "Invalid", "Failed"), 600, 2)
        dataset_status = get("datasets", "sums")["status"]
        assert dataset_status["phase"] == "Ready", dataset_status
        assert dataset_status["rows"] == 60

        created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "tuningjobs", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "TuningJob", "metadata": {"name": "sums"},
            "spec": {
                "baseModel": {"scratch": {}},
                "method": {"type": "Full"},
                "datasets": {"train": [{"dataset": "sums"}]},
                "hyperparameters": {"maxSteps": 10, "perDeviceBatchSize": 4, "precision": "fp32",
                                    "maxSeqLength": 64, "loggingSteps": 2},
                "resources": {"gpus": 0, "shmSize": "256Mi"},
                "output": {"pvc": {"claimName": "models", "path": "sums"}},
            },
        })
        # The preflight (a CPU Job from the same image) runs first: the training Job follows its report.
        job = wait_for("the training Job", lambda: _or_none(
            lambda: batch.read_namespaced_job(training_job_name("sums"), namespace)), 300, 2)
        assert job.metadata.owner_references[0].uid == created["metadata"]["uid"]
        wait_for("the run finished", lambda: phase("tuningjobs", "sums") in ("Succeeded", "Failed"), 1200, 5)
        status = get("tuningjobs", "sums")["status"]
        assert status["phase"] == "Succeeded", status
        assert status["progress"]["percent"] == 100
        assert status["result"]["path"]
        reasons = [e.reason for e in core.list_namespaced_event(
            namespace, field_selector="involvedObject.name=sums").items]
        for reason in ("JobCreated", "Started", "Succeeded"):
            assert reason in reasons

    # The real garbage collector removes the children through their ownerReferences.
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "tuningjobs", "sums")
    wait_for("the Job and ConfigMap collected", lambda: _or_none(
        lambda: batch.read_namespaced_job(training_job_name("sums"), namespace)) is None and _or_none(
        lambda: core.read_namespaced_config_map(trainer_config_map_name("sums"), namespace)) is None, 120, 2)


def _or_none(call: Callable[[], T]) -> T | None:
    try:
        return call()
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
