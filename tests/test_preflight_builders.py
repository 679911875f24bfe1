"""The preflight Job and the pins it hands the training config: pure builders."""

from __future__ import annotations

import json
from typing import Any

from kubetune.api import Dataset, TuningJob
from kubetune.api.contract import CONFIG_FILE_NAME, ExitCode
from kubetune.api.guardrails import PinnedDataset, PinnedRevisions
from kubetune.builders import owner_reference, resolve_trainer_config
from kubetune.builders.preflight import build_preflight_config_map, build_preflight_job, pin_revisions, with_gpu_memory
from kubetune.settings import Settings

SETTINGS = Settings(trainer_image="registry.local/kubetune/trainer:test", validator_cpu="250m",
                    validator_memory="2Gi", gpu_memory="40Gi")
TJ: dict[str, Any] = {
    "apiVersion": "kubetune.io/v1alpha1", "kind": "TuningJob",
    "metadata": {"name": "ministral-support", "namespace": "ml", "uid": "tj-uid-1", "generation": 3},
    "spec": {
        "baseModel": {"repo": "mistralai/Ministral-8B-Instruct-2410"},
        "datasets": {"train": [{"dataset": "support-chats"},
                               {"source": {"hf": {"repo": "org/extra", "revision": "v1"}}, "format": "alpaca"},
                               {"source": {"pvc": {"claimName": "data", "path": "more.jsonl"}}}],
                     "validation": [{"source": {"hf": {"repo": "org/extra", "revision": "v1", "split": "test"}}}]},
        "output": {"repo": "my-org/ministral-support"},
        "hfTokenSecretRef": {"name": "hub-credentials", "key": "token"},
        "resources": {"gpus": 2}, "nodeSelector": {"gpu": "h100"}, "queueName": "gpu-queue",
        "trainerImage": "registry.local/kubetune/trainer:custom", "serviceAccountName": "trainer",
    },
}
DATASET = Dataset.model_validate({"metadata": {"name": "support-chats", "namespace": "ml"},
                                  "spec": {"source": {"hf": {"repo": "my-org/support-chats"}}},
                                  "status": {"phase": "Ready", "revision": "c" * 40}})


def render() -> tuple[TuningJob, dict[str, Any], dict[str, Any]]:
    tj = TuningJob.model_validate(TJ)
    config = with_gpu_memory(resolve_trainer_config(tj, {"support-chats": DATASET}), SETTINGS)
    owner = owner_reference(TJ)
    return tj, build_preflight_config_map(tj, config, owner), build_preflight_job(tj, config, SETTINGS, owner)


def test_the_preflight_job_is_a_small_cpu_job_of_the_runs_own_image() -> None:
    _, config_map, job = render()
    assert job["metadata"]["name"] == "ministral-support-preflight"
    assert config_map["metadata"]["name"] == "ministral-support-preflight-config"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "tj-uid-1"
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "registry.local/kubetune/trainer:custom"
    assert container["command"] == ["kubetune-trainer", "preflight", "--config", "/etc/kubetune/config.json"]
    assert container["resources"] == {"requests": {"cpu": "250m", "memory": "2Gi"}, "limits": {"memory": "2Gi"}}
    assert "nodeSelector" not in pod and "tolerations" not in pod, "no GPU node is needed"
    assert "kueue.x-k8s.io/queue-name" not in job["metadata"]["labels"], "not queued with the GPU jobs"
    assert job["spec"]["suspend"] is False and pod["serviceAccountName"] == "trainer"
    assert job["spec"]["template"]["metadata"]["labels"]["kubetune.io/tuningjob"] == "ministral-support"
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0]["onExitCodes"]["values"] == [ExitCode.PERMANENT], "a setup error is not retried"
    env = {e["name"]: e for e in container["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hub-credentials", "key": "token"}
    pvc_mounts = [m for m in container["volumeMounts"] if m["mountPath"].startswith("/mnt/pvc/")]
    assert pvc_mounts and all(m["readOnly"] for m in pvc_mounts)
    # The data's claim only: the work claim is made with the training Job, and is the trainer's.
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"data"}


def test_the_preflight_config_is_the_training_config_with_the_gpu_memory_default() -> None:
    _, config_map, _ = render()
    config = json.loads(config_map["data"][CONFIG_FILE_NAME])
    assert config["spec"]["resources"]["gpuMemory"] == "40Gi"
    assert config["spec"]["datasets"]["train"][0]["source"]["hf"]["revision"] == "c" * 40
    named = TuningJob.model_validate({**TJ, "spec": {**TJ["spec"], "resources": {"gpuMemory": "24Gi"}}})
    kept = with_gpu_memory(resolve_trainer_config(named, {"support-chats": DATASET}), SETTINGS)
    assert kept.spec.resources.gpu_memory == "24Gi", "the TuningJob's own figure wins"


def test_pins_move_the_base_model_and_inline_hub_sources_to_the_resolved_commits() -> None:
    tj = TuningJob.model_validate(TJ)
    config = resolve_trainer_config(tj, {"support-chats": DATASET})
    pinned = pin_revisions(config, PinnedRevisions(
        base_model_revision="a" * 40,
        datasets=[PinnedDataset(name="support-chats", revision="c" * 40),
                  PinnedDataset(name="hf:org/extra@v1", revision="b" * 40),
                  PinnedDataset(name="pvc:data/more.jsonl")]))
    assert pinned.spec.base_model.revision == "a" * 40
    train = pinned.spec.datasets.train
    assert train[0].source is not None and train[0].source.hf is not None and train[0].source.hf.revision == "c" * 40
    assert train[1].source is not None and train[1].source.hf is not None and train[1].source.hf.revision == "b" * 40
    assert train[2] == config.spec.datasets.train[2]
    validation = pinned.spec.datasets.validation[0].source
    assert validation is not None and validation.hf is not None and validation.hf.revision == "b" * 40
    assert pin_revisions(config, None) == config
