"""The pure builders: every spec field lands in the rendered Job, no token value anywhere, names are stable."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes.client import ApiClient
from pydantic import ValidationError

from kubetune.api import Dataset, TrainerConfig, TuningJob, ValidatorConfig
from kubetune.api.contract import CONFIG_FILE_NAME, CONTRACT_VERSION, ExitCode
from kubetune.builders import (
    ResolveError,
    build_trainer_config_map,
    build_training_job,
    build_validation_job,
    build_validator_config_map,
    label_value,
    owner_reference,
    parse_pvc_path,
    resolve_trainer_config,
    resolve_validator_config,
    spec_hash,
    trainer_config_map_name,
    training_job_name,
    validation_job_name,
    validator_config_map_name,
)
from kubetune.settings import Settings

FAKE_TOKEN = "hf_" + "FaKeT0ken" * 4  # built, so no token-shaped literal sits in the source
DATA_TOKEN = "ghp_data-token-value-never-rendered-42"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SETTINGS = Settings(trainer_image="registry.local/kubetune/trainer:test", gpu_resource_name="nvidia.com/gpu",
                    trainer_cpu="6", trainer_memory="48Gi", validator_cpu="250m", validator_memory="2Gi")

# A Secret as a user would apply it: the builders never see it, the test only checks its value leaks nowhere.
SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hub-credentials"},
          "stringData": {"token": FAKE_TOKEN}}

BASE_TJ: dict[str, Any] = {
    "apiVersion": "kubetune.io/v1alpha1",
    "kind": "TuningJob",
    "metadata": {"name": "ministral-support", "namespace": "ml", "uid": "tj-uid-1", "generation": 3},
    "spec": {
        "baseModel": {"repo": "mistralai/Ministral-8B-Instruct-2410"},
        "datasets": {"train": [{"dataset": "support-chats"}]},
        "output": {"repo": "my-org/ministral-support"},
        "hfTokenSecretRef": {"name": "hub-credentials", "key": "token"},
    },
}

DATASET: dict[str, Any] = {
    "apiVersion": "kubetune.io/v1alpha1",
    "kind": "Dataset",
    "metadata": {"name": "support-chats", "namespace": "ml", "uid": "ds-uid-1", "generation": 2},
    "spec": {"source": {"hf": {"repo": "my-org/support-chats", "revision": "main"}}, "format": "auto"},
    "status": {"phase": "Ready", "revision": "0123456789abcdef0123456789abcdef01234567",
               "detectedFormat": "messages", "observedGeneration": 2},
}


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def make_tj(spec: dict[str, Any] | None = None, **meta: Any) -> TuningJob:
    body = merged(BASE_TJ, {"spec": spec or {}, "metadata": meta})
    return TuningJob.model_validate(body)


def datasets(*bodies: dict[str, Any]) -> dict[str, Dataset]:
    found = [Dataset.model_validate(b) for b in (bodies or (DATASET,))]
    return {d.metadata.name: d for d in found}


def render(spec: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any], TrainerConfig]:
    tj = make_tj(spec)
    config = resolve_trainer_config(tj, datasets())
    owner = owner_reference(tj.model_dump(mode="json", by_alias=True))
    return build_training_job(tj, config, SETTINGS, owner), build_trainer_config_map(tj, config, owner), config


def container(job: dict[str, Any]) -> dict[str, Any]:
    containers = job["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(job)["env"]}


def mounts_of(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in container(job)["volumeMounts"]}


def volume_at(job: dict[str, Any], path: str) -> dict[str, Any]:
    name = mounts_of(job)[path]["name"]
    return next(v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == name)


def pod_spec(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]


Getter = Callable[[dict[str, Any]], Any]

FIELD_CASES: list[tuple[str, dict[str, Any], Getter, Any]] = [
    ("trainer image from spec", {"trainerImage": "my.registry/trainer:1"}, lambda j: container(j)["image"],
     "my.registry/trainer:1"),
    ("trainer image from settings", {}, lambda j: container(j)["image"], SETTINGS.trainer_image),
    ("default gpu", {}, lambda j: container(j)["resources"]["limits"]["nvidia.com/gpu"], "1"),
    ("gpu count and resource name", {"resources": {"gpus": 4, "gpuResourceName": "amd.com/gpu"}},
     lambda j: container(j)["resources"]["limits"], {"amd.com/gpu": "4", "memory": "48Gi"}),
    ("gpus 0 asks for no accelerator", {"resources": {"gpus": 0}},
     lambda j: container(j)["resources"]["limits"], {"memory": "48Gi"}),
    ("cpu and memory", {"resources": {"cpu": "12", "memory": "96Gi"}}, lambda j: container(j)["resources"],
     {"requests": {"cpu": "12", "memory": "96Gi"}, "limits": {"memory": "96Gi", "nvidia.com/gpu": "1"}}),
    ("cpu and memory defaults", {}, lambda j: container(j)["resources"]["requests"], {"cpu": "6", "memory": "48Gi"}),
    ("shm size", {"resources": {"shmSize": "16Gi"}}, lambda j: volume_at(j, "/dev/shm")["emptyDir"],
     {"medium": "Memory", "sizeLimit": "16Gi"}),
    ("node selector", {"nodeSelector": {"gpu": "a100"}}, lambda j: pod_spec(j)["nodeSelector"], {"gpu": "a100"}),
    ("tolerations", {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
     lambda j: pod_spec(j)["tolerations"], [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]),
    ("no tolerations by default", {}, lambda j: "tolerations" in pod_spec(j), False),
    ("priority class", {"priorityClassName": "training"}, lambda j: pod_spec(j)["priorityClassName"], "training"),
    ("service account", {"serviceAccountName": "trainer"}, lambda j: pod_spec(j)["serviceAccountName"], "trainer"),
    ("deadline", {"activeDeadlineSeconds": 7200}, lambda j: j["spec"]["activeDeadlineSeconds"], 7200),
    ("no deadline by default", {}, lambda j: "activeDeadlineSeconds" in j["spec"], False),
    ("backoff limit", {"backoffLimit": 5}, lambda j: j["spec"]["backoffLimit"], 5),
    ("default backoff limit", {}, lambda j: j["spec"]["backoffLimit"], 2),
    ("ttl", {"ttlSecondsAfterFinished": 600}, lambda j: j["spec"]["ttlSecondsAfterFinished"], 600),
    ("kueue label", {"queueName": "team-a"}, lambda j: j["metadata"]["labels"]["kueue.x-k8s.io/queue-name"],
     "team-a"),
    ("kueue starts suspended", {"queueName": "team-a"}, lambda j: j["spec"]["suspend"], True),
    ("suspend", {"suspend": True}, lambda j: j["spec"]["suspend"], True),
    ("not suspended by default", {}, lambda j: j["spec"]["suspend"], False),
    ("no kueue label without queue", {}, lambda j: "kueue.x-k8s.io/queue-name" in j["metadata"]["labels"], False),
    ("output endpoint", {"output": {"endpoint": "https://hub.internal"}}, lambda j: env_of(j)["HF_ENDPOINT"]["value"],
     "https://hub.internal"),
    ("base model endpoint", {"baseModel": {"endpoint": "http://hub.lab:8080"}},
     lambda j: env_of(j)["HF_ENDPOINT"]["value"], "http://hub.lab:8080"),
    ("no endpoint by default", {}, lambda j: "HF_ENDPOINT" in env_of(j), False),
    ("hf token from the secret", {}, lambda j: env_of(j)["HF_TOKEN"],
     {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hub-credentials", "key": "token"}}}),
    ("no token without a secret ref", {"hfTokenSecretRef": None}, lambda j: "HF_TOKEN" in env_of(j), False),
    ("generation annotation", {}, lambda j: j["metadata"]["annotations"]["kubetune.io/generation"], "3"),
]


@pytest.mark.parametrize(("overrides", "get", "expected"), [c[1:] for c in FIELD_CASES],
                         ids=[c[0] for c in FIELD_CASES])
def test_spec_field_lands_in_the_job(overrides: dict[str, Any], get: Getter, expected: Any) -> None:
    job, _, _ = render(overrides)
    assert get(job) == expected


def test_training_job_shape() -> None:
    job, cm, _ = render()
    spec, pod = job["spec"], pod_spec(job)
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert job["metadata"]["name"] == training_job_name("ministral-support") == "ministral-support-train"
    assert job["metadata"]["namespace"] == "ml"
    for labels in (job["metadata"]["labels"], spec["template"]["metadata"]["labels"]):
        assert labels["kubetune.io/tuningjob"] == "ministral-support"
        assert labels["app.kubernetes.io/name"] == "kubetune"
        assert labels["app.kubernetes.io/component"] == "trainer"
    c = container(job)
    assert c["command"] == ["kubetune-trainer", "train", "--config", "/etc/kubetune/config.json"]
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["restartPolicy"] == "Never"  # podFailurePolicy requires it
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000,
                                      "fsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}}
    rule = spec["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailJob"
    assert rule["onExitCodes"] == {"containerName": c["name"], "operator": "In", "values": [ExitCode.PERMANENT]}
    env = env_of(job)
    assert env["HF_HUB_DISABLE_TELEMETRY"]["value"] == "1"
    assert env["PYTHONUNBUFFERED"]["value"] == "1"
    assert env["HF_HOME"]["value"] == "/cache/huggingface"
    mounts = mounts_of(job)
    assert set(mounts) >= {"/etc/kubetune", "/dev/shm", "/cache", "/workspace"}
    assert volume_at(job, "/etc/kubetune")["configMap"]["name"] == cm["metadata"]["name"] \
        == trainer_config_map_name("ministral-support")
    assert "emptyDir" in volume_at(job, "/cache") and "emptyDir" in volume_at(job, "/workspace")
    owner = job["metadata"]["ownerReferences"][0]
    assert owner == {"apiVersion": "kubetune.io/v1alpha1", "kind": "TuningJob", "name": "ministral-support",
                     "uid": "tj-uid-1", "controller": True, "blockOwnerDeletion": True}
    assert cm["metadata"]["ownerReferences"] == [owner]


def _round_trip(obj: dict[str, Any], kind: str) -> Any:
    client = ApiClient()
    model = client._ApiClient__deserialize(obj, kind)  # type: ignore[attr-defined]
    return client.sanitize_for_serialization(model)


@pytest.mark.parametrize("overrides", [{}, {"queueName": "q", "tolerations": [{"key": "a", "operator": "Exists"}],
                                            "nodeSelector": {"x": "y"}, "priorityClassName": "p",
                                            "output": {"pvc": {"claimName": "out", "path": "m"}}}])
def test_rendered_objects_use_only_real_kubernetes_fields(overrides: dict[str, Any]) -> None:
    """The kubernetes client drops fields it does not know: a typo would not survive the round trip."""
    job, cm, _ = render(overrides)
    assert _round_trip(job, "V1Job") == job
    assert _round_trip(cm, "V1ConfigMap") == cm


def test_token_value_appears_nowhere() -> None:
    inline_private = {"source": {"hf": {"repo": "my-org/private"}}, "format": "alpaca",
                      "tokenSecretRef": {"name": "data-credentials", "key": "hf"}}
    tj = make_tj({"datasets": {"train": [{"dataset": "support-chats"}, inline_private]}})
    private_ds = merged(DATASET, {"spec": {"tokenSecretRef": {"name": "data-credentials", "key": "hf"}}})
    config = resolve_trainer_config(tj, datasets(private_ds))
    owner = owner_reference(tj.model_dump(mode="json", by_alias=True))
    job = build_training_job(tj, config, SETTINGS, owner)
    cm = build_trainer_config_map(tj, config, owner)
    ds = Dataset.model_validate(private_ds)
    vconfig = resolve_validator_config(ds, SETTINGS)
    vjob = build_validation_job(ds, vconfig, SETTINGS, owner_reference(DATASET))
    vcm = build_validator_config_map(ds, vconfig, owner_reference(DATASET))
    rendered = json.dumps([job, cm, config.to_wire(), vjob, vcm, vconfig.to_wire()])
    assert FAKE_TOKEN not in rendered and DATA_TOKEN not in rendered
    assert FAKE_TOKEN in json.dumps(SECRET)  # the test really holds a token to leak
    env = env_of(job)
    assert env["KUBETUNE_DATA_TOKEN"] == {"name": "KUBETUNE_DATA_TOKEN",
                                          "valueFrom": {"secretKeyRef": {"name": "data-credentials", "key": "hf"}}}
    for var in (*container(job)["env"], *container(vjob)["env"]):
        if var["name"] in ("HF_TOKEN", "KUBETUNE_DATA_TOKEN"):
            assert "value" not in var and "secretKeyRef" in var["valueFrom"]
    assert env_of(vjob)["KUBETUNE_DATA_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "data-credentials",
                                                                                "key": "hf"}


def test_different_data_token_secrets_are_refused() -> None:
    a = {"source": {"hf": {"repo": "o/a"}}, "tokenSecretRef": {"name": "s1"}}
    b = {"source": {"hf": {"repo": "o/b"}}, "tokenSecretRef": {"name": "s2"}}
    with pytest.raises(ResolveError) as caught:
        resolve_trainer_config(make_tj({"datasets": {"train": [a, b]}}), {})
    assert caught.value.reason == "InvalidSpec" and "s1" in str(caught.value) and "s2" in str(caught.value)


def test_dataset_reference_is_resolved_and_pinned() -> None:
    tj = make_tj({"datasets": {"train": [{"dataset": "support-chats", "weight": 3}],
                               "validation": [{"dataset": "support-chats"}]}})
    config = resolve_trainer_config(tj, datasets())
    entry = config.spec.datasets.train[0]
    assert entry.dataset is None and entry.source is not None and entry.source.hf is not None
    assert entry.source.hf.repo == "my-org/support-chats"
    assert entry.source.hf.revision == "0123456789abcdef0123456789abcdef01234567"
    assert entry.format.value == "messages"  # auto resolved to what validation detected
    assert entry.weight == 3
    assert config.spec.datasets.validation[0].source == entry.source
    assert config.dataset_names == ["support-chats"]
    assert (config.name, config.namespace) == ("ministral-support", "ml")
    assert tj.spec.datasets.train[0].dataset == "support-chats"  # the TuningJob itself is untouched


def test_declared_format_wins_over_detected() -> None:
    ds = merged(DATASET, {"spec": {"format": "sharegpt"}})
    config = resolve_trainer_config(make_tj(), datasets(ds))
    assert config.spec.datasets.train[0].format.value == "sharegpt"


def test_a_dataset_whose_format_does_not_fit_the_objective_is_refused() -> None:
    dpo = make_tj({"method": {"objective": "dpo"}})  # the Dataset was detected as messages
    with pytest.raises(ResolveError) as caught:
        resolve_trainer_config(dpo, datasets())
    assert caught.value.reason == "InvalidSpec" and "method.objective dpo needs preference data" in str(caught.value)
    pairs = merged(DATASET, {"status": {"detectedFormat": "preference"}})
    config = resolve_trainer_config(dpo, datasets(pairs))
    assert config.spec.datasets.train[0].format.value == "preference"
    with pytest.raises(ResolveError) as caught:
        resolve_trainer_config(make_tj(), datasets(pairs))
    assert "set method.objective: dpo" in str(caught.value)


def test_missing_dataset_is_a_resolve_error() -> None:
    with pytest.raises(ResolveError) as caught:
        resolve_trainer_config(make_tj(), {})
    assert caught.value.reason == "DatasetNotFound" and "support-chats" in caught.value.message


def test_volumes_for_pvc_output_data_model_and_configmap_sources() -> None:
    spec = {
        "baseModel": {"repo": None, "path": "pvc:weights/llama-3-8b"},
        "datasets": {"train": [
            {"source": {"pvc": {"claimName": "corpora", "path": "support/train.jsonl"}}, "format": "messages"},
            {"source": {"configMap": {"name": "tiny-data", "key": "rows.jsonl"}}, "format": "alpaca"},
        ]},
        "output": {"repo": None, "pvc": {"claimName": "models", "path": "runs/ministral"}},
    }
    job, _, config = render(spec)
    assert config.work_dir == "/mnt/pvc/models/runs/ministral"
    assert config.mounts.pvcs == {"corpora": "/mnt/pvc/corpora", "models": "/mnt/pvc/models",
                                  "weights": "/mnt/pvc/weights"}
    assert config.mounts.config_maps == {"tiny-data": "/mnt/configmaps/tiny-data"}
    mounts = mounts_of(job)
    assert mounts["/mnt/pvc/models"]["readOnly"] is False
    assert volume_at(job, "/mnt/pvc/models")["persistentVolumeClaim"] == {"claimName": "models", "readOnly": False}
    for data_claim in ("corpora", "weights"):
        assert mounts[f"/mnt/pvc/{data_claim}"]["readOnly"] is True
        assert volume_at(job, f"/mnt/pvc/{data_claim}")["persistentVolumeClaim"] == {"claimName": data_claim,
                                                                                      "readOnly": True}
    assert mounts["/mnt/configmaps/tiny-data"]["readOnly"] is True
    assert volume_at(job, "/mnt/configmaps/tiny-data")["configMap"] == {"name": "tiny-data"}
    names = [v["name"] for v in pod_spec(job)["volumes"]]
    assert len(names) == len(set(names)) and all(DNS_LABEL.match(n) for n in names)


def test_claim_shared_by_data_and_output_is_mounted_once_writable() -> None:
    spec = {"datasets": {"train": [{"source": {"pvc": {"claimName": "team", "path": "data.jsonl"}}}]},
            "output": {"pvc": {"claimName": "team", "path": "out"}}}
    job, _, config = render(spec)
    claims = [v for v in pod_spec(job)["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [{"name": claims[0]["name"], "persistentVolumeClaim": {"claimName": "team", "readOnly": False}}]
    assert config.work_dir == "/mnt/pvc/team/out"


def test_config_map_json_validates_back() -> None:
    job, cm, config = render({"queueName": "q", "resources": {"gpus": 0}})
    text = cm["data"][CONFIG_FILE_NAME]
    assert TrainerConfig.model_validate_json(text) == config
    assert cm["metadata"]["labels"]["kubetune.io/tuningjob"] == "ministral-support"
    assert job["spec"]["template"]["spec"]["volumes"][0]["configMap"]["items"] == [
        {"key": CONFIG_FILE_NAME, "path": CONFIG_FILE_NAME}]


def test_rendering_is_deterministic() -> None:
    first, second = render({"queueName": "q"}), render({"queueName": "q"})
    assert json.dumps(first[0], sort_keys=False) == json.dumps(second[0], sort_keys=False)
    assert first[1] == second[1]


@pytest.mark.parametrize("name", [
    "a", "ministral-support", "x" * 63, "a.b.c", "a" * 253, "run-" + "very-long." * 24 + "end",
])
def test_names_are_dns_labels(name: str) -> None:
    for made in (training_job_name(name), trainer_config_map_name(name), validation_job_name(name, 12),
                 validator_config_map_name(name, 12)):
        assert len(made) <= 63 and DNS_LABEL.match(made), made
        assert made == made.lower()
    value = label_value(name)
    assert len(value) <= 63 and re.match(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", value)


def test_names_are_deterministic_and_distinct() -> None:
    long_a, long_b = "a" * 100 + ".x", "a" * 100 + ".y"
    assert training_job_name(long_a) == training_job_name(long_a)
    assert training_job_name(long_a) != training_job_name(long_b)
    assert training_job_name("a.b") != training_job_name("a-b")  # the dot was replaced: a hash tells them apart
    assert label_value(long_a) != label_value(long_b)
    assert validation_job_name("ds", 1) != validation_job_name("ds", 2)
    assert training_job_name("short") == "short-train"


def test_spec_hash_notices_edits_but_not_suspension() -> None:
    base = make_tj().spec
    assert spec_hash(base) == spec_hash(make_tj().spec)
    assert spec_hash(make_tj({"suspend": True}).spec) == spec_hash(base)
    assert spec_hash(make_tj({"hyperparameters": {"learningRate": 1e-5}}).spec) != spec_hash(base)
    job, _, _ = render()
    assert job["metadata"]["annotations"]["kubetune.io/spec-hash"] == spec_hash(base)


def test_owner_reference_needs_a_uid() -> None:
    assert owner_reference({"name": "d", "uid": "u"}, kind="Dataset")["kind"] == "Dataset"
    with pytest.raises(ValueError, match="uid"):
        owner_reference({"kind": "TuningJob", "metadata": {"name": "x"}})
    with pytest.raises(ValueError, match="kind"):
        owner_reference({"name": "x", "uid": "u"})


def test_validation_job() -> None:
    body = merged(DATASET, {"spec": {"source": {"hf": None, "pvc": {"claimName": "corpora", "path": "x.jsonl"}},
                                     "tokenSecretRef": {"name": "data-credentials"}}})
    ds = Dataset.model_validate(body)
    config = resolve_validator_config(ds, SETTINGS)
    owner = owner_reference(body)
    job = build_validation_job(ds, config, SETTINGS, owner)
    cm = build_validator_config_map(ds, config, owner)
    assert job["metadata"]["name"] == validation_job_name("support-chats", 2) == "support-chats-validate-g2"
    assert cm["metadata"]["name"] == validator_config_map_name("support-chats", 2)
    assert ValidatorConfig.model_validate_json(cm["data"][CONFIG_FILE_NAME]) == config
    c = container(job)
    assert c["command"] == ["kubetune-trainer", "validate", "--config", "/etc/kubetune/config.json"]
    assert c["image"] == SETTINGS.trainer_image
    assert c["resources"] == {"requests": {"cpu": "250m", "memory": "2Gi"}, "limits": {"memory": "2Gi"}}
    assert job["spec"]["backoffLimit"] == 1 and job["spec"]["activeDeadlineSeconds"] == 3600
    assert job["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [ExitCode.PERMANENT]
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert labels["kubetune.io/dataset"] == "support-chats" and "kubetune.io/tuningjob" not in labels
    assert env_of(job)["KUBETUNE_DATA_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "data-credentials",
                                                                               "key": "token"}
    assert "HF_TOKEN" not in env_of(job)
    assert mounts_of(job)["/mnt/pvc/corpora"]["readOnly"] is True
    assert config.mounts.pvcs == {"corpora": "/mnt/pvc/corpora"}
    assert "/dev/shm" not in mounts_of(job)
    assert pod_spec(job)["securityContext"]["runAsNonRoot"] is True
    assert pod_spec(job)["automountServiceAccountToken"] is False
    assert _round_trip(job, "V1Job") == job
    assert job["metadata"]["ownerReferences"][0]["kind"] == "Dataset"


def test_validator_config_carries_settings_and_spec() -> None:
    body = merged(DATASET, {"spec": {"source": {"hf": None, "configMap": {"name": "rows"}}, "format": "alpaca",
                                     "labels": ["a", "b"]}})
    ds = Dataset.model_validate(body)
    config = resolve_validator_config(ds, Settings(allow_private_urls=True))
    assert config.allow_private_urls is True
    assert config.mounts.config_maps == {"rows": "/mnt/configmaps/rows"}
    assert (config.format.value, config.labels) == ("alpaca", ["a", "b"])
    job = build_validation_job(ds, config, SETTINGS, owner_reference(body))
    assert volume_at(job, "/mnt/configmaps/rows")["configMap"] == {"name": "rows"}


def test_the_configs_carry_the_contract_version() -> None:
    _, cm, _ = render()
    assert json.loads(cm["data"][CONFIG_FILE_NAME])["contractVersion"] == CONTRACT_VERSION
    ds = Dataset.model_validate(DATASET)
    validator_cm = build_validator_config_map(ds, resolve_validator_config(ds, SETTINGS), owner_reference(DATASET))
    assert json.loads(validator_cm["data"][CONFIG_FILE_NAME])["contractVersion"] == CONTRACT_VERSION


def test_a_pvc_model_path_with_a_space_mounts_the_claim_the_trainer_reads() -> None:
    # Regression: "pvc: models/x" was mounted as claim "models" but read by the trainer as " models".
    job, _, config = render({"baseModel": {"repo": None, "path": "pvc: models/org/tiny"}})
    # The model's claim, and the run's work volume (a claim kubetune creates).
    assert config.mounts.pvcs == {"models": "/mnt/pvc/models",
                                  "ministral-support-work": "/mnt/pvc/ministral-support-work"}
    assert volume_at(job, "/mnt/pvc/models")["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    assert config.spec.base_model.path is not None
    pvc = parse_pvc_path(config.spec.base_model.path)
    assert pvc is not None and config.mounts.path_of_pvc(pvc.claim_name, pvc.path) == "/mnt/pvc/models/org/tiny"


def test_a_pvc_model_path_leaving_its_volume_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"must stay inside the volume: remove '\.\.'"):
        make_tj({"baseModel": {"repo": None, "path": "pvc: models/../secrets"}})
