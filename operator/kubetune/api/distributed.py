"""Distributed training: the strategy a user picks, and how the trainer is to be launched.

A run spans `resources.nodes` Pods (one per node) with `resources.gpus` GPUs each; every
GPU (or, without GPUs, every node) runs one training process. The trainer's launcher starts
those processes with torchrun; `LaunchPlan` is the part of the TrainerConfig that tells it
how many, and where the rendezvous is. The world size and the effective batch are pure
functions of the spec, so the operator, the local mode and the trainer all agree on them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from pydantic import Field

from kubetune.api.common import KubeModel

RENDEZVOUS_PORT: Final = 29500


class ParallelStrategy(StrEnum):
    AUTO = "Auto"
    DDP = "DDP"
    FSDP = "FSDP"


class DistributedSpec(KubeModel):
    """How several training processes share the work (only matters when there are several)."""

    strategy: ParallelStrategy = Field(
        default=ParallelStrategy.AUTO,
        description="DDP (a full model copy per GPU, the data split), FSDP (parameters, gradients and optimizer "
                    "state sharded over the GPUs: for Full fine-tuning of models that do not fit one GPU), or "
                    "Auto: DDP for LoRA and QLoRA, FSDP for Full when the model's training state would not fit "
                    "one GPU.",
    )


class LaunchPlan(KubeModel):
    """How many training processes the launcher starts, and where they meet (TrainerConfig.launch)."""

    nodes: int = Field(default=1, ge=1, le=64, description="Machines (Pods) of the run.")
    processes_per_node: int = Field(default=1, ge=1, le=64,
                                    description="Training processes per machine: one per GPU, or CPU processes.")
    rendezvous_endpoint: str | None = Field(
        default=None, max_length=512,
        description="host:port of the c10d rendezvous (Pod 0) when nodes > 1; one machine needs none.")
    run_id: str = Field(default="kubetune", min_length=1, max_length=253,
                        description="Rendezvous id: the same for every process of one run.")

    @property
    def world_size(self) -> int:
        return self.nodes * self.processes_per_node


def world_size(nodes: int, gpus: int) -> int:
    """Training processes of a run: one per GPU on every node, or one per node without GPUs."""
    return nodes * max(1, gpus)


def effective_batch_size(per_device: int, world: int, accumulation: int) -> int:
    """Rows per optimizer step: per device x devices x accumulation steps."""
    return per_device * world * accumulation
