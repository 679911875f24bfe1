"""Watch events of the Jobs and Pods the operator's TuningJobs and Datasets own.

Only objects carrying one of our labels reach these handlers (kopf filters by label). The
controller finds the owner through the ownerReferences (a Pod's Job, then the Job's owner).
"""

from __future__ import annotations

from typing import Any

import kopf

from kubetune.builders import LABEL_DATASET, LABEL_TUNINGJOB
from kubetune.controller.manager import Controller
from kubetune.controller.objects import JOB, POD


def register(registry: kopf.OperatorRegistry, controller: Controller) -> None:
    async def job_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        controller.observe(JOB, type, dict(body))

    async def pod_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        controller.observe(POD, type, dict(body))

    # kopf's label filters cannot say "either label": one registration per owner label.
    for label, owner in ((LABEL_TUNINGJOB, "tuningjob"), (LABEL_DATASET, "dataset")):
        kopf.on.event("batch", "v1", "jobs", labels={label: kopf.PRESENT}, registry=registry,
                      id=f"job_event_{owner}")(job_event)
        kopf.on.event("", "v1", "pods", labels={label: kopf.PRESENT}, registry=registry,
                      id=f"pod_event_{owner}")(pod_event)
