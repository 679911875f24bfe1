"""The huggingface_hub client's process-wide settings that depend on the config: Xet off for self-hosted hubs.

huggingface_hub uploads through Xet whenever the hf_xet package is installed (it is, in the
trainer image), and only huggingface.co speaks Xet: a push to a self-hosted Hub would fail.
The switch, HF_HUB_DISABLE_XET, is read once when huggingface_hub is imported, so it is set
in the environment (for anything imported later) and on the already-imported constants.
Endpoints are always passed to the client explicitly (HfApi(endpoint=...),
snapshot_download(endpoint=...)): HF_ENDPOINT is import-time state too, and one run may talk
to two hubs (a base model on one, the output on another).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from urllib.parse import urlsplit

from kubetune.api.contract import TrainerConfig

XET_SWITCH = "HF_HUB_DISABLE_XET"
_XET_HOSTS = ("huggingface.co", "hf.co")


def self_hosted_endpoints(config: TrainerConfig) -> list[str]:
    """Every Hub endpoint of the run that is not huggingface.co."""
    spec = config.spec
    endpoints = [spec.base_model.endpoint, spec.output.endpoint]
    for entry in [*spec.datasets.train, *spec.datasets.validation]:
        if entry.source is not None and entry.source.hf is not None:
            endpoints.append(entry.source.hf.endpoint)
    return [e for e in endpoints if e and not _speaks_xet(e)]


def disable_xet_for(endpoints: Iterable[str]) -> bool:
    """Turn Xet off in this process when any endpoint is self-hosted; True when it did."""
    if not list(endpoints):
        return False
    os.environ[XET_SWITCH] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # imported already: its copy of the switch was read at import
        constants.HF_HUB_DISABLE_XET = True  # type: ignore[attr-defined]
    return True


def _speaks_xet(endpoint: str) -> bool:
    host = (urlsplit(endpoint).hostname or "").lower()
    return any(host == h or host.endswith("." + h) for h in _XET_HOSTS)
