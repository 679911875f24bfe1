"""Guardrails of a run: the switches in spec.guardrails, and what status reports about cost and pins.

spec.guardrails turns the preflight, the out-of-memory retry and the divergence stop on or
off (all on by default). status.usage says what the run cost, status.pinned exactly what it
ran on (commits and the image digest), so a run can be repeated and accounted for.
"""

from __future__ import annotations

from pydantic import Field

from kubetune.api.common import KubeModel
from kubetune.api.dataset import DataSource


class DivergenceSpec(KubeModel):
    """When the training loss counts as diverged: the run then stops with reason Diverged.

    A NaN or infinite loss stops it at once. A spike stops it when `patience` logged losses in
    a row are above `spikeFactor` times the median of the `window` logged losses before them.
    """

    enabled: bool = Field(default=True, description="Stop a diverging run (NaN/inf loss or a sustained spike).")
    spike_factor: float = Field(default=3.0, gt=1, le=1000,
                                description="A logged loss above this many times the recent median is a spike.")
    window: int = Field(default=10, ge=3, le=1000,
                        description="Logged losses the recent median is taken over.")
    patience: int = Field(default=3, ge=1, le=100,
                          description="Spikes in a row (logging steps) that stop the run.")


class GuardrailsSpec(KubeModel):
    """Checks and recoveries around a run; all on by default."""

    preflight: bool = Field(
        default=True,
        description="Check token, base model, output repo, data and a GPU-memory estimate on CPU before the "
                    "training Job is created; a failed check ends the run before a GPU is used.",
    )
    oom_retry: bool = Field(
        default=True,
        description="On CUDA out of memory, resume from the last checkpoint with half the perDeviceBatchSize and "
                    "twice the gradientAccumulationSteps (the same effective batch), down to a batch of 1. One "
                    "training process only: a distributed run fails as OutOfMemory, naming the batch to set.",
    )
    divergence: DivergenceSpec = Field(default_factory=DivergenceSpec,
                                       description="Stop when the training loss diverges.")


class Usage(KubeModel):
    """What the run cost so far (or in all, once finished)."""

    gpu_seconds: float | None = Field(default=None, ge=0,
                                      description="GPUs per Pod x Pods x seconds the trainer Pods ran "
                                                  "(every attempt).")
    wall_seconds: float | None = Field(default=None, ge=0,
                                       description="Seconds the trainer Pods ran (every attempt).")
    trained_tokens: int | None = Field(default=None, ge=0, description="Tokens trained on.")
    tokens_per_second: float | None = Field(default=None, ge=0,
                                            description="Training throughput (latest, or over the run once done).")


class PinnedDataset(KubeModel):
    """The exact data one dataset of the run stands for."""

    name: str = Field(max_length=4096, description="Dataset name, or the inline source in short.")
    revision: str | None = Field(default=None, max_length=200,
                                 description="Hub commit sha or content hash; unset where none is known.")


def source_name(source: DataSource) -> str:
    """How status.pinned names an inline source: in short, with the revision asked for unless main."""
    if source.hf is not None and source.hf.revision != "main":
        return f"{source.describe()}@{source.hf.revision}"
    return source.describe()


class PinnedRevisions(KubeModel):
    """Exactly what the run ran on, recorded as soon as it is known."""

    base_model_revision: str | None = Field(default=None, max_length=200,
                                            description="Commit sha of the base model on the Hub.")
    datasets: list[PinnedDataset] = Field(default_factory=list, max_length=128,
                                          description="Revision of each dataset of the run.")
    trainer_image: str | None = Field(default=None, max_length=1024,
                                      description="Trainer image as the kubelet resolved it (imageID, a digest).")

