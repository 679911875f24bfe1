"""Training throughput: kubetune's trainer against trl's SFTTrainer with its defaults, same model and data.

Both sides train one epoch over the same rows (steps x batch 8, alpaca-like length mix,
max length 1024) with LoRA r16 on the same scratch Llama (4 layers, hidden 256, a BPE
tokenizer trained on the rows) and the same hyperparameters (lr 2e-4, cosine, 3% warmup,
fp32 on CPU, seed 42). One epoch over identical rows means both sides see identical tokens:
the run prints the non-padding and the loss-bearing token counts of each side so that can be
checked, and the final losses side by side so the speed cannot come from learning less.

kubetune's side is the real path: `kubetune-trainer train --config` on a TrainerConfig with
pvc sources in a temp folder; tokens/s = result.metrics.trainedTokens / runtimeSeconds (both
from the Trainer's own bookkeeping: non-padding tokens, train() wall time). trl's side:
`SFTTrainer` with its default settings (pad to the longest row of a random batch, no packing,
gradient checkpointing on) except what must match kubetune (the hyperparameters above, and
`assistant_only_loss=True`, so both compute the loss on answers only); tokens are counted by
wrapping its collator, time is the same train() wall time.

    python -m bench.trainer_throughput                       # 100 steps, 3 runs per side
    python -m bench.trainer_throughput --steps 30 --repeats 1 --ablations
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    REPO_ROOT,
    Figure,
    alternate,
    child_env,
    emit_result,
    machine_line,
    median_of,
    package_versions,
    print_table,
    run_worker,
)

BATCH = 8
MAX_LENGTH = 1024
LEARNING_RATE = 2e-4
WARMUP = 0.03
SEED = 42
LORA: dict[str, Any] = {"r": 16, "alpha": 32, "dropout": 0.05}
VALIDATION_ROWS = 8  # kubetune evaluates base and tuned models on these (outside the timed train())
GOAL_RATIO = 3.0

# What a user would otherwise change in trl, one step at a time (--ablations): where the gain comes from.
# (padding_free is left out: without packing trl refuses it unless max_length=None, which would train
# the few rows longer than 1,024 tokens in full and so change the tokens; FIELD-NOTES: ~1.9x.)
ABLATIONS: dict[str, dict[str, Any]] = {
    "trl, no gradient checkpointing": {"gradient_checkpointing": False},
    "trl, no checkpointing, length-grouped": {"gradient_checkpointing": False,
                                              "train_sampling_strategy": "group_by_length"},
}


def build_model(texts: Sequence[str], folder: Path, *, tiny: bool) -> Path:
    """The scratch Llama of the benchmarks (the trainer's own `scratch` builder), saved to `folder`."""
    from transformers.utils import logging as transformers_logging

    from kubetune.api.basemodel import ScratchModel
    from kubetune_trainer.training.scratch import build_scratch_model

    transformers_logging.disable_progress_bar()

    shape = (ScratchModel(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, num_key_value_heads=2,
                          vocab_size=1024) if tiny else
             ScratchModel(hidden_size=256, intermediate_size=688, num_layers=4, num_heads=4, num_key_value_heads=2,
                          vocab_size=1024))
    return build_scratch_model(shape, texts, folder, seed=SEED)


def logging_steps(steps: int) -> int:
    return max(1, steps // 10)


# --- kubetune: the trainer's command line ----------------------------------------------------

def trainer_config(folder: Path, model: Path, steps: int, run: int) -> Path:
    from kubetune.api.contract import Mounts, TrainerConfig

    spec = {
        "baseModel": {"path": str(model)},
        "method": {"type": "LoRA", "lora": LORA},
        "datasets": {
            "train": [{"source": {"pvc": {"claimName": "data", "path": "train.jsonl"}}, "format": "alpaca"}],
            "validation": [{"source": {"pvc": {"claimName": "data", "path": "validation.jsonl"}}, "format": "alpaca"}],
        },
        "hyperparameters": {
            "epochs": 1, "perDeviceBatchSize": BATCH, "maxSeqLength": MAX_LENGTH, "learningRate": LEARNING_RATE,
            "warmupRatio": WARMUP, "lrScheduler": "cosine", "precision": "fp32", "seed": SEED,
            "loggingSteps": logging_steps(steps), "saveSteps": 1_000_000,
        },
        "output": {"pvc": {"claimName": "out", "path": "model"}},
        "resources": {"gpus": 0},
    }
    out = folder / f"kubetune-{run}"
    out.mkdir(parents=True, exist_ok=True)
    config = TrainerConfig.model_validate({
        "name": "bench", "spec": spec, "workDir": str(out / "work"),
        "mounts": Mounts(pvcs={"data": str(folder), "out": str(out / "out")}).model_dump(by_alias=True),
        "resultPath": str(out / "result.json"),
    })
    path = out / "config.json"
    path.write_text(config.model_dump_json(by_alias=True, exclude_none=True), encoding="utf-8")
    return path


def run_kubetune(folder: Path, model: Path, steps: int, run: int) -> dict[str, Any]:
    from kubetune.api.progress import ProgressEvent, parse_line

    config = trainer_config(folder, model, steps, run)
    command = [sys.executable, "-m", "kubetune_trainer.cli", "train", "--config", str(config)]
    done = subprocess.run(command, capture_output=True, text=True, env=child_env(), cwd=REPO_ROOT, check=False,
                          timeout=7200)
    result_file = config.parent / "result.json"
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    if done.returncode != 0 or result.get("status") != "Succeeded":
        raise RuntimeError(f"kubetune-trainer failed ({done.returncode}): {result.get('message')}\n"
                           f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    losses = [e.loss for e in map(parse_line, done.stdout.splitlines())
              if isinstance(e, ProgressEvent) and e.loss is not None]
    loss_tokens = _loss_tokens_line(done.stdout)
    metrics = result["metrics"]
    return {
        "tokens_per_second": metrics["trainedTokens"] / metrics["runtimeSeconds"],
        "seconds": float(metrics["runtimeSeconds"]), "tokens": int(metrics["trainedTokens"]),
        "loss_tokens": loss_tokens, "steps": int(metrics["steps"]), "rows": int(metrics["trainRows"]),
        "train_loss": float(metrics["trainLoss"]), "last_loss": losses[-1] if losses else float("nan"),
        "losses": losses,
    }


def _loss_tokens_line(stdout: str) -> int:
    """From the trainer's log: `data: N training rows (X tokens in the loss), ...`."""
    import re

    found = re.search(r"data: \d+ training rows \((\d+) tokens in the loss\)", stdout)
    if found is None:
        raise RuntimeError("the trainer's log has no `data: ... tokens in the loss` line")
    return int(found.group(1))


# --- trl: SFTTrainer with its defaults --------------------------------------------------------

class CountingCollator:
    """Wraps a collator and counts what the batches carry: real (attention) tokens and loss-bearing labels."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.tokens = 0
        self.loss_tokens = 0
        self.padded = 0

    def __call__(self, rows: Any) -> Any:
        batch = self.inner(rows)
        self.padded += int(batch["input_ids"].numel())
        if "attention_mask" in batch:
            self.tokens += int(batch["attention_mask"].sum())
        else:  # padding-free: one row of real tokens
            self.tokens += int(batch["input_ids"].numel())
        self.loss_tokens += int((batch["labels"] != -100).sum())
        return batch


def trl_worker(folder: Path, model_folder: Path, steps: int, run: int, overrides: dict[str, Any]) -> dict[str, Any]:
    import datasets
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from bench.data_prep import _to_messages

    datasets.disable_caching()
    datasets.disable_progress_bars()
    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    model = AutoModelForCausalLM.from_pretrained(model_folder)
    raw = datasets.load_dataset("json", data_files=str(folder / "train.jsonl"), split="train",
                                cache_dir=str(folder / f"trl-{run}" / "cache"))
    chats = raw.map(_to_messages, batched=True, remove_columns=raw.column_names)
    args = SFTConfig(
        output_dir=str(folder / f"trl-{run}" / "out"), max_length=MAX_LENGTH, assistant_only_loss=True,
        bf16=False, per_device_train_batch_size=BATCH, num_train_epochs=1, learning_rate=LEARNING_RATE,
        lr_scheduler_type="cosine", warmup_steps=WARMUP, seed=SEED, data_seed=SEED,
        logging_steps=logging_steps(steps), save_strategy="no", report_to="none", disable_tqdm=True,
        **overrides,
    )
    peft_config = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                             target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=chats, processing_class=tokenizer,
                         peft_config=peft_config)
    counter = CountingCollator(trainer.data_collator)
    trainer.data_collator = counter
    output = trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    seconds = float(output.metrics["train_runtime"])
    return {
        "tokens_per_second": counter.tokens / seconds, "seconds": seconds, "tokens": counter.tokens,
        "loss_tokens": counter.loss_tokens, "steps": trainer.state.global_step, "rows": len(chats),
        "padding_share": 1 - counter.tokens / max(1, counter.padded),
        "train_loss": float(output.training_loss), "last_loss": losses[-1] if losses else float("nan"),
        "losses": losses,
    }


# --- the comparison ---------------------------------------------------------------------------

def prepare_inputs(folder: Path, steps: int, tiny: bool) -> Path:
    from bench.alpaca_like import alpaca_rows, row_texts, write_jsonl

    rows = alpaca_rows(steps * BATCH + VALIDATION_ROWS, seed=1)
    write_jsonl(rows[:steps * BATCH], folder / "train.jsonl")
    write_jsonl(rows[steps * BATCH:], folder / "validation.jsonl")
    # The tokenizer learns from a bigger sample of the same distribution, like a real base model's would.
    return build_model(list(row_texts(alpaca_rows(5000, seed=2))), folder / "model", tiny=tiny)


def compare(steps: int, repeats: int, tiny: bool, ablations: bool) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        folder = Path(tmp)
        model = prepare_inputs(folder, steps, tiny)
        print(f"one epoch of {steps * BATCH} rows = {steps} steps of batch {BATCH}; {repeats} run(s) per side, "
              "alternating, each in a fresh process")
        sides = {
            "kubetune": lambda run: run_kubetune(folder, model, steps, run),
            "trl": lambda run: run_worker("bench.trainer_throughput",
                                          [str(folder), str(model), str(steps), f"t{run}", "{}"]),
        }
        results = alternate(sides, repeats)
        ablation_results: dict[str, list[dict[str, Any]]] = {}
        if ablations:
            for index, (name, overrides) in enumerate(ABLATIONS.items()):
                ablation_results[name] = [run_worker("bench.trainer_throughput", [
                    str(folder), str(model), str(steps), f"a{index}-{run}", json.dumps(overrides)])
                    for run in range(repeats)]
                print(f"  {name}: {median_of(ablation_results[name], 'tokens_per_second'):,.0f} tokens/s")
    ours, theirs = results["kubetune"], results["trl"]
    speed, trl_speed = median_of(ours, "tokens_per_second"), median_of(theirs, "tokens_per_second")
    print("\nloss curves (every logging step, the median run's):")
    for name, runs in (("kubetune", ours), ("trl", theirs)):
        middle = sorted(runs, key=lambda r: r["tokens_per_second"])[len(runs) // 2]
        print(f"  {name:>8}: " + " ".join(f"{loss:.3f}" for loss in middle["losses"]))
    figures = [
        Figure("kubetune: non-padding tokens/s", speed, "tok/s"),
        Figure("kubetune: loss tokens/s", median_of(ours, "loss_tokens") / median_of(ours, "seconds"), "tok/s"),
        Figure("kubetune: train() seconds", median_of(ours, "seconds"), "s"),
        Figure("kubetune: steps", median_of(ours, "steps")),
        Figure("kubetune: non-padding tokens trained", median_of(ours, "tokens"), "tok"),
        Figure("kubetune: loss-bearing tokens", median_of(ours, "loss_tokens"), "tok"),
        Figure("kubetune: mean train loss", median_of(ours, "train_loss")),
        Figure("kubetune: last logged loss", median_of(ours, "last_loss")),
        Figure("trl: non-padding tokens/s", trl_speed, "tok/s"),
        Figure("trl: loss tokens/s", median_of(theirs, "loss_tokens") / median_of(theirs, "seconds"), "tok/s"),
        Figure("trl: train() seconds", median_of(theirs, "seconds"), "s"),
        Figure("trl: steps", median_of(theirs, "steps")),
        Figure("trl: non-padding tokens trained", median_of(theirs, "tokens"), "tok"),
        Figure("trl: loss-bearing tokens", median_of(theirs, "loss_tokens"), "tok"),
        Figure("trl: padding share of its batches", 100 * median_of(theirs, "padding_share"), "%"),
        Figure("trl: mean train loss", median_of(theirs, "train_loss")),
        Figure("trl: last logged loss", median_of(theirs, "last_loss")),
    ]
    for name, runs in ablation_results.items():
        figures.append(Figure(f"{name}: tokens/s", median_of(runs, "tokens_per_second"), "tok/s"))
        figures.append(Figure(f"{name}: ratio to trl defaults", median_of(runs, "tokens_per_second") / trl_speed,
                              "x"))
    figures.append(Figure("speed-up (kubetune / trl tokens/s)", speed / trl_speed, "x", (">=", GOAL_RATIO)))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="steps of batch 8 = rows of the epoch / 8 (100)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side, alternating (default 3)")
    parser.add_argument("--ablations", action="store_true", help="also run trl with one default changed at a time")
    parser.add_argument("--tiny", action="store_true", help="a smoke run: tiny model, 4 steps, 1 run per side")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        folder, model, steps, run, overrides = args.worker
        emit_result(trl_worker(Path(folder), Path(model), int(steps), run, json.loads(overrides)))
        return
    steps, repeats = (4, 1) if args.tiny else (args.steps, args.repeats)
    print("training throughput: kubetune's trainer vs trl's SFTTrainer (defaults)")
    print(machine_line() + f", torch threads {os.cpu_count()}")
    print(package_versions("torch", "transformers", "trl", "peft"))
    figures = compare(steps, repeats, args.tiny, args.ablations)
    print_table(f"training throughput, {steps} steps x batch {BATCH} (medians of {repeats})", figures)


if __name__ == "__main__":
    main()
