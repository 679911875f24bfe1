"""TuningJob watch events, handed to the controller (cache, then queue if news)."""

from __future__ import annotations

from typing import Any

import kopf

from kubetune.api.common import GROUP, VERSION
from kubetune.controller.manager import Controller
from kubetune.controller.objects import TUNINGJOB
from kubetune.kube import TUNINGJOBS


def register(registry: kopf.OperatorRegistry, controller: Controller) -> None:
    @kopf.on.event(GROUP, VERSION, TUNINGJOBS, registry=registry, id="tuningjob_event")
    async def tuningjob_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        controller.observe(TUNINGJOB, type, dict(body))
