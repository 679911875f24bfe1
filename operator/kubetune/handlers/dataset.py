"""Dataset watch events, handed to the controller (cache, then queue if news).

A plain watch handler rather than kopf's create/update/resume handlers: a new spec is a new
generation, which the reconciler compares with status.observedGeneration, so kopf keeps no
record of the last handled spec on the object.
"""

from __future__ import annotations

from typing import Any

import kopf

from kubetune.api.common import GROUP, VERSION
from kubetune.controller.manager import Controller
from kubetune.controller.objects import DATASET
from kubetune.kube import DATASETS


def register(registry: kopf.OperatorRegistry, controller: Controller) -> None:
    @kopf.on.event(GROUP, VERSION, DATASETS, registry=registry, id="dataset_event")
    async def dataset_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        controller.observe(DATASET, type, dict(body))
