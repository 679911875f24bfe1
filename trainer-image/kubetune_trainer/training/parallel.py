"""DDP or FSDP for a run of several processes, and what the Trainer needs to hear for each.

DDP keeps a full model copy per GPU and splits the data: right for LoRA and QLoRA (the
frozen base is shared by no one, but only the small adapter is trained and all-reduced),
and for Full fine-tuning of models whose training state fits one GPU. FSDP shards
parameters, gradients and optimizer state over the GPUs: the way to Full fine-tune a model
that does not fit one. `Auto` picks FSDP for Full when the training state (about 16 bytes
per parameter: fp32 weights, gradients and two Adam moments) would take more than
`FIT_SHARE` of one GPU, read from the safetensors headers before the model is loaded.

accelerate shards with FSDP on GPUs only, so on CPU (the local mode, the tests) FSDP falls
back to DDP with a warning, like a precision the device lacks.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune.api.distributed import ParallelStrategy
from kubetune.api.method import TuningMethod

FULL_BYTES_PER_PARAMETER = 16
FIT_SHARE = 0.6  # the rest is activations, buffers, the CUDA context


@dataclass(frozen=True)
class ParallelPlan:
    strategy: ParallelStrategy | None  # None: one process, nothing to share
    reason: str
    shared_work_dir: bool = True
    warning: str | None = None

    @property
    def fsdp(self) -> bool:
        return self.strategy is ParallelStrategy.FSDP

    def training_arguments(self) -> dict[str, Any]:
        """Extra TrainingArguments: checkpoint placement and, for FSDP, sharding."""
        if self.strategy is None:
            return {}
        args: dict[str, Any] = {
            # With a volume per node, each node keeps its own copy of every checkpoint.
            "save_on_each_node": not self.shared_work_dir,
            # LoRA leaves the frozen base out of DDP's buckets already; nothing trainable goes unused.
            "ddp_find_unused_parameters": False,
        }
        if self.fsdp:
            args["fsdp"] = True
            args["fsdp_config"] = {
                "version": 2,
                "reshard_after_forward": True,
                # Checkpoints as shards (each rank writes its own part); the final model is gathered whole.
                "state_dict_type": "SHARDED_STATE_DICT",
            }
        return args


ONE_PROCESS = ParallelPlan(None, "one process")


def choose_parallelism(requested: ParallelStrategy, *, method: TuningMethod, model_folder: Path, world_size: int,
                       cuda: bool, shared_work_dir: bool, gpu_memory: int | None = None) -> ParallelPlan:
    if world_size <= 1:
        return ONE_PROCESS
    chosen, reason = _choose(requested, method, model_folder, gpu_memory)
    warning = None
    if chosen is ParallelStrategy.FSDP and not cuda:
        warning = "FSDP shards over GPUs and this machine has none: training with DDP on CPU"
        chosen, reason = ParallelStrategy.DDP, "FSDP needs GPUs"
    return ParallelPlan(chosen, reason, shared_work_dir=shared_work_dir, warning=warning)


def _choose(requested: ParallelStrategy, method: TuningMethod, folder: Path,
            gpu_memory: int | None) -> tuple[ParallelStrategy, str]:
    parameters = parameter_count(folder) if requested is ParallelStrategy.AUTO and method is TuningMethod.FULL \
        else None
    return planned_strategy(requested, method, parameters, gpu_memory)


def planned_strategy(requested: ParallelStrategy, method: TuningMethod, parameters: int | None,
                     gpu_memory: int | None) -> tuple[ParallelStrategy, str]:
    """DDP or FSDP for several processes, and why: the rule the trainer and the preflight share."""
    if requested is not ParallelStrategy.AUTO:
        return requested, "distributed.strategy"
    if method is not TuningMethod.FULL:
        return ParallelStrategy.DDP, f"{method.value} trains a small adapter"
    if parameters is None or gpu_memory is None:
        return ParallelStrategy.DDP, "model or GPU size unknown"
    need = parameters * FULL_BYTES_PER_PARAMETER
    gib = 1024**3
    if need > FIT_SHARE * gpu_memory:
        return ParallelStrategy.FSDP, (f"Full training state ~{need / gib:.1f} GiB exceeds {FIT_SHARE:.0%} of one "
                                       f"GPU's {gpu_memory / gib:.0f} GiB")
    return ParallelStrategy.DDP, f"Full training state ~{need / gib:.1f} GiB fits one GPU"


def parameter_count(folder: Path) -> int | None:
    """Parameters of the model in `folder`, from its safetensors headers (no weights read)."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    try:
        for path in files:
            with path.open("rb") as stream:
                (size,) = struct.unpack("<Q", stream.read(8))
                header = json.loads(stream.read(size))
            total += sum(math.prod(entry["shape"]) for name, entry in header.items() if name != "__metadata__")
    except (OSError, ValueError, KeyError, struct.error):
        return None
    return total


def gpu_memory_bytes(local_rank: int) -> int | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return int(torch.cuda.get_device_properties(local_rank).total_memory)
