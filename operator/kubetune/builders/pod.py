"""The pod pieces training and validation Jobs share: security, volumes, env, the Job shell.

Both Jobs run the trainer image as a non-root user with no service-account token, read their
config from a ConfigMap at /etc/kubetune, and get data volumes under /mnt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from kubetune.api import ExitCode, Mounts, SecretKeyRef
from kubetune.api.contract import CONFIG_FILE_NAME, TERMINATION_LOG
from kubetune.builders.names import standard_labels
from kubetune.builders.resolve import WORKSPACE_DIR

CONFIG_DIR: Final = "/etc/kubetune"
CONFIG_PATH: Final = f"{CONFIG_DIR}/{CONFIG_FILE_NAME}"
CACHE_DIR: Final = "/cache"
HF_HOME: Final = f"{CACHE_DIR}/huggingface"
SHM_DIR: Final = "/dev/shm"
RUN_AS_USER: Final = 1000

_CONFIG_VOLUME = "kubetune-config"
_SHM_VOLUME = "dshm"
_CACHE_VOLUME = "hf-cache"
_WORKSPACE_VOLUME = "workspace"


def env_value(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def env_from_secret(name: str, ref: SecretKeyRef) -> dict[str, Any]:
    """An env var the kubelet fills from a Secret: the operator never sees the value."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def common_env() -> list[dict[str, Any]]:
    return [
        env_value("HF_HOME", HF_HOME),
        env_value("HF_HUB_DISABLE_TELEMETRY", "1"),
        env_value("PYTHONUNBUFFERED", "1"),
    ]


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _volume_name(prefix: str, index: int) -> str:
    # Indexes, not claim names: claim names may be 253 chars, volume names only 63.
    return f"{prefix}-{index}"


def volumes_and_mounts(
    config_map_name: str, mounts: Mounts, writable_claims: frozenset[str], shm_size: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Pod volumes and the container's volumeMounts: config, scratch space, caches, data."""
    volumes: list[dict[str, Any]] = [
        {"name": _CONFIG_VOLUME, "configMap": {"name": config_map_name,
                                               "items": [{"key": CONFIG_FILE_NAME, "path": CONFIG_FILE_NAME}]}},
        {"name": _CACHE_VOLUME, "emptyDir": {}},
        {"name": _WORKSPACE_VOLUME, "emptyDir": {}},
    ]
    volume_mounts: list[dict[str, Any]] = [
        {"name": _CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": _CACHE_VOLUME, "mountPath": CACHE_DIR},
        {"name": _WORKSPACE_VOLUME, "mountPath": WORKSPACE_DIR},
    ]
    if shm_size is not None:
        # PyTorch data loader workers share tensors through /dev/shm; the runtime's 64Mi is too small.
        volumes.append({"name": _SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": shm_size}})
        volume_mounts.append({"name": _SHM_VOLUME, "mountPath": SHM_DIR})
    for index, (claim, folder) in enumerate(sorted(mounts.pvcs.items())):
        read_only = claim not in writable_claims
        name = _volume_name("pvc", index)
        volumes.append({"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}})
        volume_mounts.append({"name": name, "mountPath": folder, "readOnly": read_only})
    for index, (cm_name, folder) in enumerate(sorted(mounts.config_maps.items())):
        name = _volume_name("data-cm", index)
        volumes.append({"name": name, "configMap": {"name": cm_name}})
        volume_mounts.append({"name": name, "mountPath": folder, "readOnly": True})
    return volumes, volume_mounts


def pod_failure_policy(container_name: str) -> dict[str, Any]:
    """Fail the Job at once when the trainer says retrying cannot help. Don't count a stop from
    outside against backoffLimit: a Pod the cluster disrupted (preemption, eviction, drain), or a
    trainer that exited INTERRUPTED after saving a checkpoint on SIGTERM; its replacement resumes."""
    def exit_codes(*codes: int) -> dict[str, Any]:
        return {"containerName": container_name, "operator": "In", "values": list(codes)}

    return {
        "rules": [
            {"action": "FailJob", "onExitCodes": exit_codes(ExitCode.PERMANENT)},
            {"action": "Ignore", "onExitCodes": exit_codes(ExitCode.INTERRUPTED)},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]
    }


@dataclass(frozen=True)
class JobPlan:
    """Everything that differs between a training and a validation Job."""

    name: str
    namespace: str
    owner: dict[str, Any]
    component: str
    container_name: str
    selector_labels: dict[str, str]
    image: str
    command: list[str]
    config_map_name: str
    env: list[dict[str, Any]]
    resources: dict[str, Any]
    mounts: Mounts
    writable_claims: frozenset[str] = frozenset()
    shm_size: str | None = None
    job_labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    priority_class_name: str | None = None
    service_account_name: str | None = None
    suspend: bool = False
    active_deadline_seconds: int | None = None
    backoff_limit: int = 0
    ttl_seconds_after_finished: int | None = None
    # Several nodes: an Indexed Job of this many Pods, their host names under this headless Service.
    nodes: int = 1
    subdomain: str | None = None
    termination_grace_period_seconds: int | None = None


def render_job(plan: JobPlan) -> dict[str, Any]:
    """A batch/v1 Job running one container of the trainer image, as a plain dict."""
    volumes, volume_mounts = volumes_and_mounts(plan.config_map_name, plan.mounts, plan.writable_claims,
                                                plan.shm_size)
    pod_labels = {**standard_labels(plan.component), **plan.selector_labels}
    container: dict[str, Any] = {
        "name": plan.container_name,
        "image": plan.image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(plan.command),
        "env": list(plan.env),
        "resources": plan.resources,
        "volumeMounts": volume_mounts,
        "securityContext": container_security_context(),
        "terminationMessagePath": TERMINATION_LOG,
        # An OOM kill leaves no result file; the log tail then tells what happened.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec: dict[str, Any] = {
        # podFailurePolicy needs Never: the Job, not the kubelet, decides about retries.
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": volumes,
    }
    if plan.termination_grace_period_seconds is not None:
        pod_spec["terminationGracePeriodSeconds"] = plan.termination_grace_period_seconds
    if plan.service_account_name:
        pod_spec["serviceAccountName"] = plan.service_account_name
    if plan.priority_class_name:
        pod_spec["priorityClassName"] = plan.priority_class_name
    if plan.node_selector:
        pod_spec["nodeSelector"] = dict(plan.node_selector)
    if plan.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in plan.tolerations]
    if plan.subdomain:
        pod_spec["subdomain"] = plan.subdomain  # with the Indexed Job's host names: <job>-<index>.<subdomain>

    job_spec: dict[str, Any] = {
        "backoffLimit": plan.backoff_limit,
        "podFailurePolicy": pod_failure_policy(plan.container_name),
        # A replacement Pod starts only once the old one is gone: two trainers never share a work
        # folder, and a ReadWriteOnce claim is free again (the only value podFailurePolicy allows).
        "podReplacementPolicy": "Failed",
        "suspend": plan.suspend,
        "template": {
            "metadata": {"labels": pod_labels, "annotations": dict(plan.annotations)},
            "spec": pod_spec,
        },
    }
    if plan.nodes > 1:
        # One Pod per node, all running at once; JOB_COMPLETION_INDEX tells each its node index.
        job_spec.update({"completionMode": "Indexed", "completions": plan.nodes, "parallelism": plan.nodes})
    if plan.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = plan.active_deadline_seconds
    if plan.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = plan.ttl_seconds_after_finished
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": plan.name,
            "namespace": plan.namespace,
            "labels": {**pod_labels, **plan.job_labels},
            "annotations": dict(plan.annotations),
            "ownerReferences": [dict(plan.owner)],
        },
        "spec": job_spec,
    }


def render_config_map(name: str, namespace: str, owner: dict[str, Any], component: str,
                      selector_labels: dict[str, str], config_json: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {**standard_labels(component), **selector_labels},
            "ownerReferences": [dict(owner)],
        },
        "data": {CONFIG_FILE_NAME: config_json},
    }
