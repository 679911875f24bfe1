"""The training hyperparameters of a TuningJob (spec.hyperparameters)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from kubetune.api.common import KubeModel


class Precision(StrEnum):
    BF16 = "bf16"
    FP16 = "fp16"
    FP32 = "fp32"


class LRScheduler(StrEnum):
    LINEAR = "linear"
    COSINE = "cosine"
    CONSTANT = "constant"
    CONSTANT_WITH_WARMUP = "constantWithWarmup"


class Hyperparameters(KubeModel):
    """Training hyperparameters. The defaults suit a LoRA run on one GPU."""

    epochs: float = Field(default=3, gt=0, le=1000, description="Passes over the training data.")
    max_steps: int | None = Field(default=None, ge=1, le=10_000_000, description="Stop after this many steps.")
    learning_rate: float = Field(default=2e-4, gt=0, le=1, description="Peak learning rate.")
    per_device_batch_size: int = Field(default=8, ge=1, le=4096, description="Rows per device per step.")
    gradient_accumulation_steps: int = Field(default=1, ge=1, le=1024, description="Steps per optimizer update.")
    precision: Precision = Field(
        default=Precision.BF16,
        description="bf16, fp16 or fp32; falls back (with a warning in the log) where the device lacks it.",
    )
    logging_steps: int = Field(default=10, ge=1, le=1_000_000, description="Report progress every N steps.")
    save_steps: int = Field(default=500, ge=1, le=1_000_000, description="Checkpoint every N steps.")
    eval_steps: int | None = Field(default=None, ge=1, le=1_000_000,
                                   description="Evaluate every N steps; at the end only when unset.")
    max_samples: int | None = Field(default=None, ge=1, le=1_000_000_000,
                                    description="Use at most this many training rows (sampled with the seed).")
    max_seq_length: int = Field(default=2048, ge=16, le=1_048_576, description="Longer rows are truncated.")
    seed: int = Field(default=42, ge=0, le=2**31 - 1, description="Random seed for sampling and init.")
    warmup_ratio: float = Field(default=0.03, ge=0, le=1, description="Share of steps spent warming up.")
    weight_decay: float = Field(default=0.0, ge=0, le=1, description="AdamW weight decay.")
    lr_scheduler: LRScheduler = Field(default=LRScheduler.COSINE, description="Learning-rate schedule.")
    packing: bool = Field(default=False, description="Pack several rows into one sequence.")
    train_on_inputs: bool = Field(default=False,
                                  description="Count prompt tokens in the loss too (default: answers only).")
