"""The work volume claim a TuningJob gets when it names none: created before its Job, checked when it exists.

The claim's name is deterministic (<name>-work), so one that exists is usually what an earlier
pass created. It may also be a claim an earlier TuningJob of the same name kept (retainPolicy
Retain): used again, since runs never share a folder (runs/<uid>-<runHash>/). A claim of an
earlier TuningJob of that name that the garbage collector is about to delete is waited for; a
claim kubetune did not make for this name is never mounted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kubetune.api import TuningJob
from kubetune.builders import LABEL_TUNINGJOB, ResolveError
from kubetune.builders.names import COMPONENT_WORK_VOLUME, LABEL_COMPONENT
from kubetune.controller.reconciler import ControllerContext

logger = logging.getLogger(__name__)


class ClaimNotReady(RuntimeError):
    """The claim of an earlier TuningJob of this name is still there; the controller retries later."""


def ensure_work_claim(ctx: ControllerContext, tj: TuningJob, claim: Mapping[str, Any]) -> None:
    """Create `claim`, or accept the one that exists if it is this TuningJob's to use.

    Raises ResolveError (the run fails, saying what to do) for a claim kubetune did not create
    for this TuningJob's name, and ClaimNotReady while an earlier TuningJob's claim awaits deletion.
    """
    if ctx.kube.create(claim) is not None:
        logger.info("%s/%s: created work volume claim %s", tj.metadata.namespace, tj.metadata.name,
                    claim["metadata"]["name"])
        return
    namespace, name = tj.metadata.namespace, claim["metadata"]["name"]
    existing = ctx.kube.get_claim(namespace, name)
    if existing is None:
        raise ClaimNotReady(f"claim {namespace}/{name} existed but could not be read back")
    meta = existing.get("metadata") or {}
    labels = meta.get("labels") or {}
    ours = (labels.get(LABEL_TUNINGJOB) == claim["metadata"]["labels"][LABEL_TUNINGJOB]
            and labels.get(LABEL_COMPONENT) == COMPONENT_WORK_VOLUME)
    if not ours:
        raise ResolveError(
            "WorkVolumeConflict",
            f"a PersistentVolumeClaim {name} exists that kubetune did not create for TuningJob {tj.metadata.name}: "
            f"to train on it set spec.workVolume.claimName: {name}; otherwise rename or delete it",
        )
    owners = [ref.get("uid") for ref in meta.get("ownerReferences") or ()]
    if owners and tj.metadata.uid not in owners:
        raise ClaimNotReady(f"claim {namespace}/{name} belongs to an earlier TuningJob {tj.metadata.name} that was "
                            "deleted; waiting for the garbage collector to remove it")
    if not owners:
        logger.info("%s/%s: using work volume claim %s kept from an earlier TuningJob of this name", namespace,
                    tj.metadata.name, name)
