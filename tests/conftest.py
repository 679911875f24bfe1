"""Test-wide environment: nothing here may reach the internet.

huggingface_hub reads some variables at import time, so they are set before any test
module imports it. Fixtures used by several test files live in tests/support/.
"""

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The Hub test server speaks plain HTTP + LFS, not Xet.
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """One emulated Kubernetes API server for this test, with a Job controller (tests/support/kube_cluster.py)."""
    from support.kube_cluster import (
        WIRING_BATCH_PERIOD,
        WIRING_MAX_API_BACKOFF,
        WIRING_POD_FAILURE_BACKOFF,
        emulated_cluster,
    )
    from support.kube_rbac import chart_authorizer

    # The operator may do only what the chart's RBAC grants it, as on a real cluster.
    with emulated_cluster(batch_period=WIRING_BATCH_PERIOD, pod_failure_backoff=WIRING_POD_FAILURE_BACKOFF,
                          max_api_backoff=WIRING_MAX_API_BACKOFF, authorizer=chart_authorizer()) as emulated:
        monkeypatch.setenv("KUBECONFIG", str(emulated.kubeconfig(tmp_path / "kubeconfig")))
        yield emulated
        assert not emulated.emulator.denied, "the chart's RBAC refused the operator:\n" + "\n".join(
            emulated.emulator.denied)
