"""Opt-in GPU tests (`pytest -m gpu`): QLoRA nf4 and bf16 LoRA on a real-architecture Llama built from config.

Skipped where no CUDA device is visible. The model is a scratch Llama large enough for
the 4-bit kernels and bf16 matmuls to do real work (hidden 512, 4 layers), trained for a
few steps through the trainer's own CLI entry point, then reloaded from what it saved.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from kubetune.api.basemodel import ScratchModel
from kubetune.api.contract import ExitCode, TrainerResult
from kubetune.api.hyperparameters import Hyperparameters, Precision
from kubetune.api.method import MethodSpec
from kubetune.api.progress import ProgressEvent, parse_line
from kubetune.api.tuningjob import Task
from kubetune_trainer.cli import main
from support.toydata import generation_rows, write_jsonl
from support.trainer_config import data_entry, run_dir, trainer_config, write_config

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

SCRATCH = {"vocabSize": 1024, "hiddenSize": 512, "intermediateSize": 1376, "numLayers": 4, "numHeads": 8,
           "numKeyValueHeads": 4}
METHODS = {
    "QLoRA": {"type": "QLoRA", "quantization": {"bits": 4, "quantType": "nf4"}, "lora": {"r": 8, "alpha": 16}},
    "LoRA": {"type": "LoRA", "lora": {"r": 8, "alpha": 16}},
}


@pytest.fixture(autouse=True)
def _needs_cuda() -> None:
    # A fixture rather than skipif: torch is imported only when these tests are selected.
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")


def _bf16_or_skip() -> None:
    import torch

    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")


@pytest.mark.parametrize("method", ["QLoRA", "LoRA"])
def test_trains_saves_and_reloads_in_bf16(tmp_path: Path, capsys: pytest.CaptureFixture[str], method: str) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    _bf16_or_skip()
    write_jsonl(tmp_path / "data" / "train.jsonl", generation_rows("messages", 64))
    config = trainer_config(tmp_path, train=[data_entry("train.jsonl")], scratch=SCRATCH,
                            hyperparameters={"maxSteps": 6, "loggingSteps": 2, "precision": "bf16",
                                             "learningRate": 1e-3})
    config.spec.method = MethodSpec.model_validate(METHODS[method])
    code = main(["train", "--config", str(write_config(tmp_path, config))])
    out = capsys.readouterr().out
    result = TrainerResult.model_validate_json((tmp_path / "result.json").read_text())
    assert code == ExitCode.OK, result
    assert "warning: precision" not in out, "bf16 was asked for on a bf16 GPU: no fallback"
    losses = [e.loss for e in map(parse_line, out.splitlines()) if isinstance(e, ProgressEvent) and e.loss is not None]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses), losses
    assert result.metrics is not None and result.metrics.train_loss is not None
    assert math.isfinite(result.metrics.train_loss) and result.metrics.steps == 6

    final = run_dir(tmp_path) / "final"
    base = AutoModelForCausalLM.from_pretrained(run_dir(tmp_path) / "scratch-base", dtype=torch.bfloat16,
                                                device_map={"": 0})
    model = PeftModel.from_pretrained(base, final).eval()
    trained_b = [p for name, p in model.named_parameters() if "lora_B" in name]
    assert trained_b and any(p.abs().sum() > 0 for p in trained_b), "lora_B starts at zero: training moved it"
    ids = torch.tensor([[1, 5, 9, 17, 33, 65]], device="cuda")
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert torch.isfinite(logits).all()


def _lora_layers(model: Any) -> list[Any]:
    return [module for name, module in model.named_modules() if hasattr(module, "base_layer")
            and hasattr(module, "lora_A") and name.endswith("q_proj")]


@pytest.mark.parametrize("method", ["QLoRA", "LoRA"])
def test_bf16_is_what_the_layers_compute_in(tmp_path: Path, method: str) -> None:
    """The precision plan reaches the weights, the TrainingArguments and the matmuls of a training step."""
    import torch
    from transformers import Trainer

    from kubetune_trainer.training.device import plan_device
    from kubetune_trainer.training.modelload import load_model, load_tokenizer
    from kubetune_trainer.training.scratch import build_scratch_model
    from kubetune_trainer.training.trainloop import training_arguments

    _bf16_or_skip()
    texts = [m["content"] for row in generation_rows("messages", 64) for m in row["messages"]]
    folder = build_scratch_model(ScratchModel.model_validate(SCRATCH), texts, tmp_path / "base", seed=0)
    plan = plan_device(Precision.BF16)
    assert plan.bf16 and plan.warning is None
    tokenizer = load_tokenizer(folder)
    model = load_model(folder, task=Task.TEXT_GENERATION, method=MethodSpec.model_validate(METHODS[method]),
                       plan=plan, pad_token_id=tokenizer.pad_token_id)
    layers = _lora_layers(model)
    assert layers, "LoRA wraps the attention projections"
    if method == "QLoRA":
        import bitsandbytes as bnb

        four_bit = layers[0].base_layer
        assert isinstance(four_bit, bnb.nn.Linear4bit)
        assert four_bit.weight.quant_type == "nf4" and four_bit.compute_dtype == torch.bfloat16
    else:
        assert layers[0].base_layer.weight.dtype == torch.bfloat16

    hp = Hyperparameters.model_validate({"maxSteps": 1, "perDeviceBatchSize": 2, "precision": "bf16",
                                         "loggingSteps": 1, "saveSteps": 100})
    args = training_arguments(hp, output_dir=tmp_path / "checkpoints", plan=plan, has_eval=False,
                              classification=False)
    assert args.bf16 and not args.fp16 and not args.use_cpu
    ids = tokenizer("The capital of Peru is Lima. " * 4)["input_ids"]
    rows = [{"input_ids": ids, "labels": ids, "attention_mask": [1] * len(ids)} for _ in range(4)]
    seen: list[torch.dtype] = []
    hook = layers[0].lora_A["default"].register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    try:
        trainer = Trainer(model=model, args=args, train_dataset=rows)
        assert trainer.accelerator.mixed_precision == "bf16"
        trainer.train()
    finally:
        hook.remove()
    assert seen and all(dtype == torch.bfloat16 for dtype in seen), seen


def test_a_real_cuda_out_of_memory_is_retried_with_a_smaller_batch(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The OOM retry on a real CUDA allocator: the process is capped at 1.5 GiB, where a batch of 64
    rows of 512 tokens (~3 GiB of activations on this model) cannot fit and a batch of 8 can."""
    import torch

    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, 1.5 * 2**30 / total))
    try:
        long_answer = " ".join(f"word{i % 97}" for i in range(900))  # well past 512 tokens: every row truncated
        rows = [{"messages": [{"role": "user", "content": f"question {i}"},
                              {"role": "assistant", "content": long_answer}]} for i in range(256)]
        write_jsonl(tmp_path / "data" / "train.jsonl", rows)
        config = trainer_config(tmp_path, train=[data_entry("train.jsonl")], scratch=SCRATCH,
                                hyperparameters={"maxSteps": 4, "loggingSteps": 1, "saveSteps": 2,
                                                 "perDeviceBatchSize": 64, "maxSeqLength": 512,
                                                 "precision": "fp16"})
        code = main(["train", "--config", str(write_config(tmp_path, config))])
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    out = capsys.readouterr().out
    result = TrainerResult.model_validate_json((tmp_path / "result.json").read_text())
    assert code == ExitCode.OK, result
    assert any(line.startswith("CUDA out of memory at step") for line in out.splitlines()), out[-3000:]
    events = [e for e in map(parse_line, out.splitlines()) if isinstance(e, ProgressEvent) and e.loss is not None]
    assert events and events[-1].per_device_batch_size is not None and events[-1].per_device_batch_size < 64
    assert events[-1].per_device_batch_size * (events[-1].gradient_accumulation_steps or 0) == 64
    assert result.metrics is not None and result.metrics.steps == 4
