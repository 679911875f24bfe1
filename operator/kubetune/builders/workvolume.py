"""The work volume of a TuningJob: which claim holds its runs/<uid>-<runHash>/ folder, and the
PersistentVolumeClaim kubetune creates when the TuningJob names none.

The order of precedence is documented on `WorkVolumeSpec`. The created claim is owned by the
TuningJob (Kubernetes deletes it with the TuningJob) unless retainPolicy is Retain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from kubetune.api import RetainPolicy, TuningJob
from kubetune.builders.names import (
    ANNOTATION_RETAIN_POLICY,
    COMPONENT_WORK_VOLUME,
    LABEL_TUNINGJOB,
    label_value,
    standard_labels,
    work_volume_claim_name,
)
from kubetune.settings import Settings

DEFAULT_ACCESS_MODES: Final = ("ReadWriteOnce",)
MULTI_NODE_ACCESS_MODES: Final = ("ReadWriteMany",)


@dataclass(frozen=True)
class WorkVolumePlan:
    """Where a TuningJob's work folders live."""

    claim_name: str | None  # None: the Pod's own disk (emptyDir), gone with the Pod
    path: str  # the folder inside the claim that holds runs/ ("" is the claim's root)
    created: bool  # a claim kubetune creates for this TuningJob

    @property
    def location(self) -> str | None:
        """The folder as people name it: pvc:CLAIM/PATH (None for the Pod's own disk)."""
        if self.claim_name is None:
            return None
        inner = self.path.strip("/")
        return f"pvc:{self.claim_name}/{inner}" if inner else f"pvc:{self.claim_name}"


def plan_work_volume(tj: TuningJob, settings: Settings) -> WorkVolumePlan:
    spec = tj.spec
    wanted = spec.work_volume
    created = WorkVolumePlan(work_volume_claim_name(tj.metadata.name), "", created=True)
    if wanted.claim_name is not None:
        return WorkVolumePlan(wanted.claim_name, wanted.path or "", created=False)
    if wanted.ephemeral:
        return WorkVolumePlan(None, "", created=False)
    if wanted.asks_for_claim:
        return created
    if spec.output.pvc is not None:
        # The user named durable storage for the model: the runs live beside it, final/ is a hard link away.
        return WorkVolumePlan(spec.output.pvc.claim_name, spec.output.pvc.path, created=False)
    if settings.work_volume_ephemeral:
        return WorkVolumePlan(None, "", created=False)
    return created


def build_work_volume_claim(tj: TuningJob, settings: Settings, owner: dict[str, Any]) -> dict[str, Any] | None:
    """The PersistentVolumeClaim kubetune creates for the TuningJob, or None when it uses another volume."""
    plan = plan_work_volume(tj, settings)
    if not plan.created or plan.claim_name is None:
        return None
    wanted = tj.spec.work_volume
    retain = wanted.retain_policy is RetainPolicy.RETAIN
    metadata: dict[str, Any] = {
        "name": plan.claim_name,
        "namespace": tj.metadata.namespace,
        "labels": {**standard_labels(COMPONENT_WORK_VOLUME), LABEL_TUNINGJOB: label_value(tj.metadata.name)},
    }
    if retain:
        # No ownerReference: the garbage collector leaves the claim when the TuningJob goes.
        metadata["annotations"] = {ANNOTATION_RETAIN_POLICY: RetainPolicy.RETAIN.value}
    else:
        metadata["ownerReferences"] = [dict(owner)]
    spec: dict[str, Any] = {
        # A run on several nodes mounts the claim on each of them.
        "accessModes": list(wanted.access_modes or (MULTI_NODE_ACCESS_MODES if tj.spec.resources.nodes > 1
                                                    else DEFAULT_ACCESS_MODES)),
        "volumeMode": "Filesystem",
        "resources": {"requests": {"storage": wanted.size or settings.work_volume_size}},
    }
    storage_class = wanted.storage_class_name or settings.work_volume_storage_class
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata, "spec": spec}
