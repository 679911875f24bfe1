"""Faults injected into the training processes torchrun starts (test-side only).

Python imports `sitecustomize` at start-up from the first folder on sys.path that has one: a
test puts this folder first on PYTHONPATH and describes the faults in KUBETUNE_TEST_FAULTS
(JSON), and every process torchrun starts (those with a RANK) wraps the trainer's model loader
(support/modelhooks.py, so the tests folder must be on PYTHONPATH too) as
tests/test_trainer_guardrails.py does in one process:

    ranks          the ranks that get the faults (all when absent)
    oomAfterCalls  training forward calls that go through before each one raises
                   torch.cuda.OutOfMemoryError (the real class: the trainer's own handler is tested)
    lossFactor     multiply the training loss by this ("nan": NaN) ...
    lossFromCall   ... from this training forward call on
"""

from __future__ import annotations

import json
import os
from typing import Any

FAULTS_ENV = "KUBETUNE_TEST_FAULTS"


def _install(faults: dict[str, Any], rank: int) -> None:
    import torch

    import kubetune_trainer.training.train as train_stage
    from support.modelhooks import hooked_model_loader

    wanted = faults.get("ranks")
    if wanted is not None and rank not in wanted:
        return
    oom_after = faults.get("oomAfterCalls")
    loss_from = faults.get("lossFromCall")
    factor = float(faults.get("lossFactor", 1.0))
    calls = 0

    def before(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        nonlocal calls
        if not module.training:
            return
        calls += 1
        if oom_after is not None and calls > oom_after:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory on rank {rank} (injected)")

    def after(module: Any, args: Any, kwargs: dict[str, Any], output: Any) -> Any:
        if module.training and loss_from is not None and calls >= loss_from:
            output["loss"] = output["loss"] * factor
        return output

    train_stage.load_model = hooked_model_loader(train_stage.load_model, before, after)  # type: ignore[assignment]


if os.environ.get(FAULTS_ENV) and "RANK" in os.environ:
    _install(json.loads(os.environ[FAULTS_ENV]), int(os.environ["RANK"]))
