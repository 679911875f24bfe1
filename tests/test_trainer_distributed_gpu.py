"""Opt-in multi-GPU tests (`pytest -m gpu`): DDP for LoRA/QLoRA, FSDP for Full, on real devices.

Skipped unless at least two CUDA devices are visible. Each runs the trainer's own entry point
with a LaunchPlan of 2 processes (torchrun, NCCL), so it is the path a Pod with
`resources.gpus: 2` takes. The CPU tests (test_trainer_distributed.py) cover the same code
with gloo; what only GPUs can show is each rank on its own device, QLoRA's 4-bit base per
rank, and FSDP's sharded checkpoints and the gathered final model.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kubetune.api.contract import ExitCode, TrainerResult
from kubetune.api.tuningjob import MethodSpec
from support.toydata import generation_rows, write_jsonl
from support.trainer_config import data_entry, trainer_config, write_config

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

SCRATCH = {"vocabSize": 1024, "hiddenSize": 512, "intermediateSize": 1376, "numLayers": 4, "numHeads": 8,
           "numKeyValueHeads": 4}
METHODS: dict[str, dict[str, Any]] = {
    "LoRA": {"type": "LoRA", "lora": {"r": 8, "alpha": 16}},
    "QLoRA": {"type": "QLoRA", "quantization": {"bits": 4, "quantType": "nf4"}, "lora": {"r": 8, "alpha": 16}},
    "Full": {"type": "Full"},
}


@pytest.fixture(autouse=True)
def _needs_two_gpus() -> None:
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("needs at least 2 CUDA devices")


def _train(tmp_path: Path, method: str, strategy: str) -> tuple[TrainerResult, str]:
    write_jsonl(tmp_path / "data" / "train.jsonl", generation_rows("messages", 128))
    config = trainer_config(tmp_path, train=[data_entry("train.jsonl")], scratch=SCRATCH,
                            hyperparameters={"maxSteps": 6, "loggingSteps": 2, "saveSteps": 3, "precision": "bf16",
                                             "learningRate": 1e-3, "perDeviceBatchSize": 4},
                            distributed={"strategy": strategy})
    config.spec.method = MethodSpec.model_validate(METHODS[method])
    config.launch = config.launch.model_copy(update={"processes_per_node": 2})
    run = subprocess.run([sys.executable, "-m", "kubetune_trainer.cli", "train", "--config",
                          str(write_config(tmp_path, config))], capture_output=True, text=True, timeout=1800,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    result = TrainerResult.model_validate_json((tmp_path / "result.json").read_text())
    assert run.returncode == ExitCode.OK, (result, run.stdout[-3000:], run.stderr[-3000:])
    return result, run.stdout


@pytest.mark.parametrize("method", ["LoRA", "QLoRA"])
def test_ddp_trains_an_adapter_with_one_rank_per_gpu(tmp_path: Path, method: str) -> None:
    result, out = _train(tmp_path, method, "Auto")
    assert "distributed: 2 processes, DDP" in out
    assert result.metrics is not None and result.metrics.steps == 6
    assert (tmp_path / "work" / "final" / "adapter_model.safetensors").is_file()
    checkpoint = tmp_path / "work" / "checkpoints" / "checkpoint-6"
    assert {p.name for p in checkpoint.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}


def test_fsdp_shards_checkpoints_and_saves_the_whole_model(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    result, out = _train(tmp_path, "Full", "FSDP")
    assert "distributed: 2 processes, FSDP" in out
    assert result.metrics is not None and result.metrics.steps == 6
    checkpoint = tmp_path / "work" / "checkpoints" / "checkpoint-6"
    assert any(p.name.startswith("pytorch_model_fsdp") for p in checkpoint.iterdir()), sorted(checkpoint.iterdir())
    final = AutoModelForCausalLM.from_pretrained(tmp_path / "work" / "final")
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "work" / "scratch-base")
    assert sum(p.numel() for p in final.parameters()) == sum(p.numel() for p in base.parameters())
    changed = [name for (name, a), (_, b) in zip(final.named_parameters(), base.named_parameters(), strict=True)
               if not a.float().allclose(b.float())]
    assert changed, "the gathered final weights are the trained ones"
