"""Opt-in multi-GPU tests (`pytest -m gpu`): DDP for LoRA/QLoRA, FSDP for Full, on real devices.

Skipped unless at least two CUDA devices are visible. Each runs the trainer's own entry point
with a LaunchPlan of 2 processes (torchrun, NCCL), so it is the path a Pod with
`resources.gpus: 2` takes. The CPU tests (test_trainer_distributed.py) cover the same code
with gloo; what only GPUs can show is each rank on its own device, QLoRA's 4-bit base per
rank, and FSDP's sharded checkpoints and the gathered final model.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kubetune.api.contract import ExitCode, TrainerResult
from kubetune.api.method import MethodSpec
from kubetune_trainer.workdir import WorkDir
from support.toydata import generation_rows, write_jsonl
from support.trainer_config import data_entry, run_dir, trainer_config, write_config
from support.trainer_process import TRAINER, signal_when, start_trainer

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


def _config(tmp_path: Path, method: str, strategy: str, **hyperparameters: Any) -> Path:
    write_jsonl(tmp_path / "data" / "train.jsonl", generation_rows("messages", 128))
    hp = {"maxSteps": 6, "loggingSteps": 2, "saveSteps": 1000, "precision": "bf16", "learningRate": 1e-3,
          "perDeviceBatchSize": 4, **hyperparameters}
    config = trainer_config(tmp_path, train=[data_entry("train.jsonl")], scratch=SCRATCH, hyperparameters=hp,
                            distributed={"strategy": strategy})
    config.spec.method = MethodSpec.model_validate(METHODS[method])
    config.launch = config.launch.model_copy(update={"processes_per_node": 2})
    return write_config(tmp_path, config)


def _train(tmp_path: Path, config: Path) -> tuple[TrainerResult, str]:
    run = subprocess.run([*TRAINER, "--config", str(config)], capture_output=True, text=True, timeout=1800,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    result = TrainerResult.model_validate_json((tmp_path / "result.json").read_text())
    assert run.returncode == ExitCode.OK, (result, run.stdout[-3000:], run.stderr[-3000:])
    return result, run.stdout


@pytest.mark.parametrize("method", ["LoRA", "QLoRA"])
def test_ddp_trains_an_adapter_with_one_rank_per_gpu(tmp_path: Path, method: str) -> None:
    result, out = _train(tmp_path, _config(tmp_path, method, "Auto"))
    assert "distributed: 2 processes, DDP" in out
    assert result.metrics is not None and result.metrics.steps == 6
    assert (run_dir(tmp_path) / "final" / "adapter_model.safetensors").is_file()


def test_fsdp_checkpoints_in_shards_resumes_them_and_saves_the_whole_model(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    config = _config(tmp_path, "Full", "FSDP", maxSteps=20, loggingSteps=1)
    process = start_trainer(config)
    seen = signal_when(process, signal.SIGTERM, lambda event: event.step >= 2)
    assert process.stdout is not None
    seen += process.stdout.readlines()
    assert process.wait(timeout=600) == ExitCode.INTERRUPTED, "".join(seen[-30:])
    assert any("distributed: 2 processes, FSDP" in line for line in seen)
    checkpoint = WorkDir(run_dir(tmp_path)).newest_checkpoint()
    assert checkpoint is not None, "".join(seen[-30:])
    assert any(p.name.startswith("pytorch_model_fsdp") for p in checkpoint.iterdir()), sorted(checkpoint.iterdir())

    result, out = _train(tmp_path, config)
    assert f"resuming from {checkpoint.name}" in out
    assert result.metrics is not None and result.metrics.steps == 20
    final = AutoModelForCausalLM.from_pretrained(run_dir(tmp_path) / "final")
    base = AutoModelForCausalLM.from_pretrained(run_dir(tmp_path) / "scratch-base")
    assert sum(p.numel() for p in final.parameters()) == sum(p.numel() for p in base.parameters())
    changed = [name for (name, a), (_, b) in zip(final.named_parameters(), base.named_parameters(), strict=True)
               if not a.float().allclose(b.float())]
    assert changed, "the gathered final weights are the trained ones"
