"""Where a run keeps its work folder (checkpoints, the finished model) so that it outlives its Pods.

A Job retry, an evicted or preempted Pod, a drained node, suspend and resume: each starts a new
Pod, and a new Pod continues from the last checkpoint only if the work folder survived the old
one. So by default every TuningJob gets a PersistentVolumeClaim that the operator creates and
that is deleted with the TuningJob. `workVolume` picks another claim, sizes the created one, keeps
it after the TuningJob is deleted, or opts out (ephemeral).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from kubetune.api.common import BYTE_QUANTITY, DNS_SUBDOMAIN, KubeModel

AccessMode = Literal["ReadWriteOnce", "ReadWriteOncePod", "ReadWriteMany"]


class RetainPolicy(StrEnum):
    """What happens to the claim kubetune created when its TuningJob is deleted."""

    DELETE = "Delete"
    RETAIN = "Retain"


class WorkVolumeSpec(KubeModel):
    """The volume holding the run's checkpoints and finished model (under runs/<uid>-<runHash>/).

    Which volume, first match: claimName (an existing claim); ephemeral (the Pod's own disk:
    nothing survives a Pod restart); size, storageClassName, accessModes or retainPolicy set (a
    claim kubetune creates); output.pvc set (that claim, under its path); else a claim kubetune
    creates with the operator's default size and storage class.
    """

    claim_name: str | None = Field(
        default=None, min_length=1, max_length=253, pattern=DNS_SUBDOMAIN,
        description="An existing PersistentVolumeClaim to keep the work folder on; kubetune never deletes it.",
    )
    path: str | None = Field(default=None, min_length=1, max_length=1024,
                             description="Folder inside claimName for kubetune's runs/ (default: the claim's root).")
    size: str | None = Field(default=None, pattern=BYTE_QUANTITY, max_length=32,
                             description="Size of the claim kubetune creates, e.g. 200Gi; the operator's default "
                                         "when unset. A full fine-tune needs room for two checkpoints with "
                                         "optimizer state (about 12 bytes per parameter each).")
    storage_class_name: str | None = Field(
        default=None, min_length=1, max_length=253, pattern=DNS_SUBDOMAIN,
        description="StorageClass of the claim kubetune creates; the operator's default, else the cluster's.",
    )
    access_modes: list[AccessMode] | None = Field(
        default=None, min_length=1, max_length=3,
        description="Access modes of the claim kubetune creates (default [ReadWriteOnce]).",
    )
    retain_policy: RetainPolicy | None = Field(
        default=None,
        description="Delete (default): the created claim goes with the TuningJob. Retain: it stays, with the "
                    "checkpoints and the model, until you delete it.",
    )
    ephemeral: bool = Field(
        default=False,
        description="Keep the work folder on the Pod's own disk (emptyDir): a new Pod starts training from "
                    "step 0 and a failed push loses the model. For clusters without persistent storage.",
    )

    @property
    def asks_for_claim(self) -> bool:
        """Whether a field of the claim kubetune creates is set (so kubetune creates one)."""
        return any(v is not None for v in (self.size, self.storage_class_name, self.access_modes,
                                           self.retain_policy))

    @model_validator(mode="after")
    def _one_kind_of_volume(self) -> WorkVolumeSpec:
        created = [n for n, v in (("size", self.size), ("storageClassName", self.storage_class_name),
                                  ("accessModes", self.access_modes), ("retainPolicy", self.retain_policy))
                   if v is not None]
        if self.claim_name is not None and created:
            raise ValueError(f"{', '.join(created)} apply to the claim kubetune creates, not to claimName "
                             f"{self.claim_name}: remove them or remove claimName")
        if self.ephemeral and (self.claim_name is not None or created):
            raise ValueError("ephemeral keeps the work folder on the Pod's disk: remove "
                             f"{', '.join(created or ['claimName'])} or set ephemeral: false")
        if self.path is not None:
            if self.claim_name is None:
                raise ValueError("path is a folder inside claimName: set claimName, or remove path")
            if ".." in self.path.split("/"):
                raise ValueError("path must stay inside the volume: remove '..'")
        return self
