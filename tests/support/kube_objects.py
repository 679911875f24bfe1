"""The objects a real cluster writes, in the shapes it writes them (Kubernetes 1.33).

- the API server's defaulting of Jobs and Pods at create (selector, controller labels, pod
  template defaults, the Pod's QoS class and default tolerations);
- the Pod the Job controller makes from a Job's template;
- Pod statuses as the scheduler and the kubelet write them (scheduled, ContainerCreating,
  waiting, running, terminated), with the conditions a 1.3x kubelet reports;
- Events as client-go's recorder (core/v1) and the scheduler (events.k8s.io/v1) post them.

Pure functions on plain dicts: the emulator, the Job controller and the test's kubelet share them.
"""

from __future__ import annotations

import copy
import secrets
import time
from datetime import UTC, datetime
from typing import Any

JOB_TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
NODE_NAME = "emulated-node-1"
NODE_IP = "10.89.0.2"
# The API server's generateName suffix: 5 characters from an alphabet without vowels or look-alikes.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def stamp(moment: float | None = None) -> str:
    """An RFC 3339 time with seconds, as the API server serialises metav1.Time."""
    when = datetime.fromtimestamp(moment, UTC) if moment is not None else datetime.now(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_stamp() -> str:
    """metav1.MicroTime, as in events.k8s.io/v1 eventTime."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def generated_name(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))


# --- the API server's defaulting -------------------------------------------------------------------

def _default_pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    for container in spec.get("containers") or []:
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        image = str(container.get("image", ""))
        container.setdefault("imagePullPolicy", "Always" if image.endswith(":latest") or ":" not in image
                             else "IfNotPresent")
        container.setdefault("resources", {})


def default_job(job: dict[str, Any]) -> None:
    """What the API server adds to a batch/v1 Job at create (the uid is already set)."""
    meta, spec = job["metadata"], job.setdefault("spec", {})
    uid, name = meta["uid"], meta["name"]
    spec.setdefault("parallelism", 1)
    spec.setdefault("completions", 1)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed")
    spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
    template = spec.setdefault("template", {})
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    labels.update({"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
                   "controller-uid": uid, "job-name": name})
    _default_pod_spec(template.setdefault("spec", {}))
    if not meta.get("labels"):
        meta["labels"] = dict(labels)


def _qos_class(spec: dict[str, Any]) -> str:
    requests_and_limits = [(c.get("resources") or {}) for c in spec.get("containers") or []]
    if not any(r.get("requests") or r.get("limits") for r in requests_and_limits):
        return "BestEffort"
    guaranteed = all(
        (r.get("limits") or {}).get(kind) is not None
        and (r.get("requests") or {}).get(kind, (r.get("limits") or {}).get(kind)) == (r.get("limits") or {}).get(kind)
        for r in requests_and_limits for kind in ("cpu", "memory"))
    return "Guaranteed" if guaranteed else "Burstable"


def default_pod(pod: dict[str, Any]) -> None:
    """What the API server and its admission plugins add to a Pod at create."""
    spec = pod.setdefault("spec", {})
    _default_pod_spec(spec)
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    tolerations = spec.setdefault("tolerations", [])
    for taint in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(t.get("key") == taint for t in tolerations):
            tolerations.append({"key": taint, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
    status = pod.setdefault("status", {})
    status.setdefault("phase", "Pending")
    status.setdefault("qosClass", _qos_class(spec))


# --- the Job controller's Pod ----------------------------------------------------------------------

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"


def pod_for_job(job: dict[str, Any], index: int | None = None) -> dict[str, Any]:
    """The Pod the Job controller creates from the Job's template (CreatePodsWithGenerateName).

    `index`: the Pod's completion index in an Indexed Job, which it carries as an annotation and
    a label, in its host name (`<job>-<index>`) and as JOB_COMPLETION_INDEX in its containers.
    """
    meta = job["metadata"]
    template = copy.deepcopy(job["spec"]["template"])
    template_meta = template.get("metadata") or {}
    labels = {**(template_meta.get("labels") or {}),
              "batch.kubernetes.io/controller-uid": meta["uid"], "batch.kubernetes.io/job-name": meta["name"],
              "controller-uid": meta["uid"], "job-name": meta["name"]}
    annotations = dict(template_meta.get("annotations") or {})
    spec = template.get("spec") or {}
    if index is not None:
        labels[COMPLETION_INDEX] = annotations[COMPLETION_INDEX] = str(index)
        spec["hostname"] = f"{meta['name']}-{index}"
        for container in spec.get("containers") or []:
            container.setdefault("env", []).append({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                "fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}})
    pod_meta: dict[str, Any] = {
        "generateName": f"{meta['name']}-" if index is None else f"{meta['name']}-{index}-",
        "namespace": meta["namespace"],
        "labels": labels,
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"], "uid": meta["uid"],
                             "controller": True, "blockOwnerDeletion": True}],
        "finalizers": [*(template_meta.get("finalizers") or []), JOB_TRACKING_FINALIZER],
    }
    if annotations:
        pod_meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}


# --- Pod statuses: the scheduler's and the kubelet's ----------------------------------------------

def _condition(pod: dict[str, Any], type_: str, status: str, reason: str | None = None,
               message: str | None = None) -> dict[str, Any]:
    """A Pod condition; its lastTransitionTime kept while its status stays the same."""
    before = next((c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == type_), None)
    since = before["lastTransitionTime"] if before is not None and before.get("status") == status else stamp()
    condition: dict[str, Any] = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def binding(pod: dict[str, Any], node: str = NODE_NAME) -> dict[str, Any]:
    """The scheduler's Binding of a Pod to a node (POST pods/{name}/binding)."""
    meta = pod["metadata"]
    return {"apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta.get("namespace", "default"), "uid": meta.get("uid")},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}}


def scheduled_patch(pod: dict[str, Any], node: str = NODE_NAME) -> dict[str, Any]:
    """What the API server writes for a Binding: the node, and PodScheduled True, in one write."""
    return {"spec": {"nodeName": node}, "status": {"conditions": [_condition(pod, "PodScheduled", "True")]}}


def unschedulable_patch(pod: dict[str, Any], message: str) -> dict[str, Any]:
    return {"status": {"phase": "Pending", "conditions": [
        _condition(pod, "PodScheduled", "False", "Unschedulable", message)]}}


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    return dict(pod["spec"]["containers"][0])


def _container_status(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return dict(statuses[0])


def kubelet_status(pod: dict[str, Any], state: dict[str, Any], *, sandbox_ready: bool = True,
                   phase: str | None = None) -> dict[str, Any]:
    """The whole Pod status the kubelet reports for its (single) container in `state`
    ({"waiting": ...}, {"running": ...} or {"terminated": ...})."""
    container = _container(pod)
    name, image = container["name"], container.get("image", "")
    before = _container_status(pod)
    status = dict(pod.get("status") or {})
    running, terminated = "running" in state, "terminated" in state
    if phase is None:
        phase = "Running" if running else ("Pending" if not terminated else
                                           "Succeeded" if state["terminated"].get("exitCode") == 0 else "Failed")
    started_container = running or terminated
    container_id = before.get("containerID") or f"containerd://{secrets.token_hex(32)}"
    not_ready = f"containers with unready status: [{name}]"
    ready_reason = "PodCompleted" if terminated else ("ContainersNotReady" if not running else None)
    conditions = [
        _condition(pod, "PodReadyToStartContainers", "True" if sandbox_ready and not terminated else "False"),
        _condition(pod, "Initialized", "True"),
        _condition(pod, "Ready", "True" if running else "False", ready_reason,
                   not_ready if not running and not terminated else None),
        _condition(pod, "ContainersReady", "True" if running else "False", ready_reason,
                   not_ready if not running and not terminated else None),
        _condition(pod, "PodScheduled", "True"),
    ]
    # Conditions others own (DisruptionTarget, readiness gates) are kept.
    kubelet_owned = {c["type"] for c in conditions}
    conditions += [c for c in status.get("conditions") or [] if c.get("type") not in kubelet_owned]
    container_status: dict[str, Any] = {
        "name": name, "image": image, "imageID": f"{image.split(':')[0]}@sha256:{'0' * 64}" if started_container
        else "", "ready": running, "restartCount": 0, "started": running, "state": state, "lastState": {},
    }
    if started_container:
        container_status["containerID"] = container_id
    status.update({"phase": phase, "conditions": conditions, "containerStatuses": [container_status],
                   "hostIP": NODE_IP, "hostIPs": [{"ip": NODE_IP}],
                   "startTime": status.get("startTime") or stamp()})
    if sandbox_ready and "podIP" not in status:
        pod_ip = f"10.244.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 2}"
        status.update({"podIP": pod_ip, "podIPs": [{"ip": pod_ip}]})
    return status


def creating_state() -> dict[str, Any]:
    return {"waiting": {"reason": "ContainerCreating"}}


def waiting_state(reason: str, message: str) -> dict[str, Any]:
    return {"waiting": {"reason": reason, "message": message}}


def running_state() -> dict[str, Any]:
    return {"running": {"startedAt": stamp()}}


def terminated_state(pod: dict[str, Any], exit_code: int, message: str = "", reason: str | None = None
                     ) -> dict[str, Any]:
    started = (_container_status(pod).get("state") or {}).get("running", {}).get("startedAt") or stamp()
    terminated: dict[str, Any] = {"exitCode": exit_code,
                                  "reason": reason or ("Completed" if exit_code == 0 else "Error"),
                                  "startedAt": started, "finishedAt": stamp()}
    if message:
        terminated["message"] = message
    terminated["containerID"] = _container_status(pod).get("containerID") or f"containerd://{secrets.token_hex(32)}"
    return {"terminated": terminated}


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


# --- Events ----------------------------------------------------------------------------------------

def _reference(obj: dict[str, Any], field_path: str | None = None) -> dict[str, Any]:
    meta = obj["metadata"]
    ref = {"apiVersion": obj.get("apiVersion", "v1"), "kind": obj.get("kind", ""), "name": meta["name"],
           "namespace": meta.get("namespace", "default"), "uid": meta.get("uid", ""),
           "resourceVersion": meta.get("resourceVersion", "")}
    if field_path:
        ref["fieldPath"] = field_path
    return ref


def _event_name(obj: dict[str, Any]) -> str:
    # client-go names an Event after its object and the time in nanoseconds, in hex.
    return f"{obj['metadata']['name']}.{time.time_ns():x}"


def core_event(obj: dict[str, Any], reason: str, message: str, *, component: str, type_: str = "Normal",
               host: str | None = None, field_path: str | None = None) -> dict[str, Any]:
    """A core/v1 Event as client-go's record.EventRecorder posts it (the Job controller, the kubelet)."""
    now = stamp()
    source = {"component": component, **({"host": host} if host else {})}
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": _event_name(obj), "namespace": obj["metadata"].get("namespace", "default")},
        "involvedObject": _reference(obj, field_path),
        "reason": reason, "message": message, "source": source, "type": type_,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1, "eventTime": None,
        "reportingComponent": component, "reportingInstance": host or "",
    }


def scheduler_event(pod: dict[str, Any], node: str = NODE_NAME) -> dict[str, Any]:
    """The scheduler's Scheduled Event (it posts through events.k8s.io/v1)."""
    meta = pod["metadata"]
    return {
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": _event_name(pod), "namespace": meta.get("namespace", "default")},
        "eventTime": micro_stamp(), "reportingController": "default-scheduler",
        "reportingInstance": "default-scheduler-emulated", "action": "Binding", "reason": "Scheduled",
        "regarding": _reference(pod), "note": f"Successfully assigned {meta.get('namespace')}/{meta['name']} to {node}",
        "type": "Normal",
    }
