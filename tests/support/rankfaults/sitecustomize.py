"""Faults injected into the training processes torchrun starts (test-side only).

Python imports `sitecustomize` at start-up from the first folder on sys.path that has one: a
test puts this folder first on PYTHONPATH and describes the faults in KUBETUNE_TEST_FAULTS
(JSON), and every process torchrun starts (those with a RANK) wraps the trainer's model loader
as tests/test_trainer_guardrails.py does in one process:

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

    wanted = faults.get("ranks")
    if wanted is not None and rank not in wanted:
        return
    oom_after = faults.get("oomAfterCalls")
    loss_from = faults.get("lossFromCall")
    factor = float(faults.get("lossFactor", 1.0))
    calls = 0
    real_load_model = train_stage.load_model

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

    def load_model_with_faults(*args: Any, **kwargs: Any) -> Any:
        model = real_load_model(*args, **kwargs)
        model.register_forward_pre_hook(before, with_kwargs=True)
        model.register_forward_hook(after, with_kwargs=True)
        return model

    train_stage.load_model = load_model_with_faults  # type: ignore[assignment]


if os.environ.get(FAULTS_ENV) and "RANK" in os.environ:
    _install(json.loads(os.environ[FAULTS_ENV]), int(os.environ["RANK"]))
