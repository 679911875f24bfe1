"""The test playing the scheduler and the kubelet on the Pods the emulated Job controller creates.

Each step writes what the real component writes, over HTTP so every watcher sees it:
the scheduler binds the Pod (nodeName, PodScheduled) or finds no node (Unschedulable); the
kubelet reports ContainerCreating, a waiting reason, Running (ready), and the terminated
container with its termination message. Steps a test skips are taken on the way: a Pod is
scheduled and its container created before it can run. Events go with them, as the
scheduler and the kubelet post them.
"""

from __future__ import annotations

from typing import Any

from support.kube_cluster import JOBS, PODS, Cluster
from support.kube_objects import (
    NODE_NAME,
    binding,
    core_event,
    creating_state,
    kubelet_status,
    running_state,
    scheduler_event,
    terminated_state,
    unschedulable_patch,
    waiting_state,
)


def pods_of(cluster: Cluster, job: dict[str, Any]) -> list[dict[str, Any]]:
    """The Pods the Job controller made for `job` (its controller reference)."""
    uid = job["metadata"]["uid"]
    return [pod for pod in cluster.list(PODS, job["metadata"]["namespace"])
            if any(ref.get("uid") == uid for ref in pod["metadata"].get("ownerReferences") or [])]


def start_pod(cluster: Cluster, job: dict[str, Any], *, other_than: str | None = None, timeout: float = 15) -> str:
    """The name of the Pod the Job controller started for `job` and that has not finished (not
    `other_than`): the first one, or the one replacing a failed one."""
    def newest() -> str | None:
        pods = [p for p in pods_of(cluster, job) if p["metadata"]["name"] != other_than
                and not p["metadata"].get("deletionTimestamp")
                and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        pods.sort(key=lambda p: (p["metadata"]["creationTimestamp"], int(p["metadata"]["resourceVersion"])))
        return pods[-1]["metadata"]["name"] if pods else None
    return cluster.wait_for(f"a Pod of Job {job['metadata']['name']}" + (f" after {other_than}" if other_than else ""),
                            newest, timeout)


def _pod(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    pod = cluster.get(PODS, namespace, name)
    if pod is None:
        raise AssertionError(f"Pod {namespace}/{name} does not exist")
    return pod


def _post_event(cluster: Cluster, event: dict[str, Any]) -> None:
    resource = "events.k8s.io/v1/events" if event["apiVersion"].startswith("events.k8s.io") else "v1/events"
    cluster.apply(resource, event)


def _kubelet_event(cluster: Cluster, pod: dict[str, Any], reason: str, message: str, type_: str = "Normal") -> None:
    container = pod["spec"]["containers"][0]["name"]
    _post_event(cluster, core_event(pod, reason, message, component="kubelet", type_=type_, host=NODE_NAME,
                                    field_path=f"spec.containers{{{container}}}"))


def _set_status(cluster: Cluster, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
    return cluster.patch(PODS, namespace, name, {"status": status}, subresource="status")


def schedule_pod(cluster: Cluster, namespace: str, name: str) -> None:
    """The scheduler binds the Pod to the node (if it has not yet)."""
    pod = _pod(cluster, namespace, name)
    if pod["spec"].get("nodeName"):
        return
    cluster.post(PODS, namespace, name, "binding", binding(pod))
    _post_event(cluster, scheduler_event(pod))


def create_container(cluster: Cluster, namespace: str, name: str) -> None:
    """The kubelet admits the scheduled Pod: ContainerCreating, its sandbox not up yet."""
    schedule_pod(cluster, namespace, name)
    pod = _pod(cluster, namespace, name)
    if (pod.get("status") or {}).get("containerStatuses"):
        return
    _set_status(cluster, namespace, name, kubelet_status(pod, creating_state(), sandbox_ready=False))


def run_container(cluster: Cluster, namespace: str, pod_name: str) -> None:
    create_container(cluster, namespace, pod_name)
    pod = _pod(cluster, namespace, pod_name)
    container = pod["spec"]["containers"][0]
    _kubelet_event(cluster, pod, "Pulled", f'Container image "{container.get("image")}" already present on machine')
    _kubelet_event(cluster, pod, "Created", f"Created container: {container['name']}")
    _set_status(cluster, namespace, pod_name, kubelet_status(pod, running_state()))
    _kubelet_event(cluster, pod, "Started", f"Started container {container['name']}")


def wait_container(cluster: Cluster, namespace: str, pod_name: str, reason: str, message: str) -> None:
    """The container cannot start (ImagePullBackOff, CreateContainerConfigError ...)."""
    create_container(cluster, namespace, pod_name)
    pod = _pod(cluster, namespace, pod_name)
    _set_status(cluster, namespace, pod_name, kubelet_status(pod, waiting_state(reason, message)))
    _kubelet_event(cluster, pod, "BackOff" if "BackOff" in reason else "Failed", message, "Warning")


def terminate_container(cluster: Cluster, namespace: str, pod_name: str, *, exit_code: int, message: str = "",
                        reason: str | None = None) -> None:
    """The container exits; the kubelet reports it with its termination message."""
    pod = _pod(cluster, namespace, pod_name)
    if not (pod.get("status") or {}).get("containerStatuses"):
        run_container(cluster, namespace, pod_name)
        pod = _pod(cluster, namespace, pod_name)
    _set_status(cluster, namespace, pod_name,
                kubelet_status(pod, terminated_state(pod, exit_code, message, reason)))


def unschedulable(cluster: Cluster, namespace: str, pod_name: str, message: str) -> None:
    """The scheduler finds no node for the Pod."""
    pod = _pod(cluster, namespace, pod_name)
    cluster.patch(PODS, namespace, pod_name, unschedulable_patch(pod, message), subresource="status")
    event = scheduler_event(pod)
    event.update(reason="FailedScheduling", action="Scheduling", note=message, type="Warning")
    _post_event(cluster, event)


def job_condition(cluster: Cluster, namespace: str, job: str, type_: str) -> dict[str, Any] | None:
    """The Job's condition of that type if it is True (as the emulated Job controller wrote it)."""
    status = (cluster.get(JOBS, namespace, job) or {}).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == type_ and c["status"] == "True"), None)
