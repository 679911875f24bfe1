"""The kinds the controller watches, their keys, their owners, and the parts of them it keeps.

A key is (kind, namespace, name). TuningJobs and Datasets are the reconciled kinds; Jobs are
owned by one of them (ownerReference), Pods by a Job. The cache keeps TuningJobs and Datasets
whole (their spec is parsed) but only what the status derivation reads of Jobs and Pods:
a Job's pod template or a Pod's spec are most of their size and never read again
(client-go calls this an informer's transform).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from kubetune.api.common import GROUP

Obj = dict[str, Any]
ObjectKey = tuple[str, str, str]  # (kind, namespace, name)

TUNINGJOB: Final = "TuningJob"
DATASET: Final = "Dataset"
JOB: Final = "Job"
POD: Final = "Pod"
RECONCILED_KINDS: Final = (TUNINGJOB, DATASET)
# Never read, and the largest parts of an object as the API server returns it.
_DROPPED_METADATA: Final = ("managedFields",)
_DROPPED_ANNOTATIONS: Final = ("kubectl.kubernetes.io/last-applied-configuration",)


def meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def key_of(kind: str, obj: Mapping[str, Any]) -> ObjectKey:
    m = meta(obj)
    return (kind, str(m.get("namespace") or "default"), str(m.get("name") or ""))


def version_of(obj: Mapping[str, Any] | None) -> str | None:
    version = meta(obj).get("resourceVersion") if obj is not None else None
    return str(version) if version is not None else None


def parent_of(kind: str, obj: Mapping[str, Any]) -> ObjectKey | None:
    """What owns this object, as far as the controller cares: a Job's TuningJob or Dataset, a Pod's Job."""
    m = meta(obj)
    namespace = str(m.get("namespace") or "default")
    for ref in m.get("ownerReferences") or ():
        ref_kind = ref.get("kind")
        if kind == JOB and ref_kind in RECONCILED_KINDS and str(ref.get("apiVersion", "")).startswith(GROUP + "/"):
            return (str(ref_kind), namespace, str(ref["name"]))
        if kind == POD and ref_kind == JOB:
            return (JOB, namespace, str(ref["name"]))
    return None


def _slim_metadata(m: Mapping[str, Any]) -> Obj:
    slim = {k: v for k, v in m.items() if k not in _DROPPED_METADATA}
    annotations = slim.get("annotations")
    if annotations and any(a in annotations for a in _DROPPED_ANNOTATIONS):
        slim["annotations"] = {k: v for k, v in annotations.items() if k not in _DROPPED_ANNOTATIONS}
    return slim


def _job_essentials(job: Mapping[str, Any]) -> Obj:
    """What `observe_job` and the reconcilers read of a Job: metadata, `spec.suspend`, status."""
    spec = job.get("spec") or {}
    return {"apiVersion": job.get("apiVersion"), "kind": job.get("kind"), "metadata": _slim_metadata(meta(job)),
            "spec": {"suspend": spec["suspend"]} if "suspend" in spec else {}, "status": job.get("status") or {}}


def _pod_essentials(pod: Mapping[str, Any]) -> Obj:
    """What `observe_pods` reads of a Pod: metadata, status, its containers' names and resources."""
    containers = [{"name": c.get("name"), "resources": c.get("resources") or {}}
                  for c in (pod.get("spec") or {}).get("containers") or ()]
    return {"apiVersion": pod.get("apiVersion"), "kind": pod.get("kind"), "metadata": _slim_metadata(meta(pod)),
            "spec": {"containers": containers}, "status": pod.get("status") or {}}


def _whole(obj: Mapping[str, Any]) -> Obj:
    return {**obj, "metadata": _slim_metadata(meta(obj))}


def essentials(kind: str, obj: Mapping[str, Any]) -> Obj:
    """The part of `obj` the cache keeps (a new dict; nested values may be shared with `obj`)."""
    if kind == JOB:
        return _job_essentials(obj)
    if kind == POD:
        return _pod_essentials(obj)
    return _whole(obj)
