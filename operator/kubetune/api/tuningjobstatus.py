"""What the operator reports of a TuningJob (its status): phase, progress, final figures, the published model."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from kubetune.api.common import Condition, KubeModel
from kubetune.api.guardrails import PinnedRevisions, Usage


class TuningJobPhase(StrEnum):
    PENDING = "Pending"
    WAITING_FOR_DATA = "WaitingForData"
    STARTING = "Starting"
    RUNNING = "Running"
    PUBLISHING = "Publishing"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


class TrainingProgress(KubeModel):
    """Where a running job is, from the trainer's latest progress line."""

    step: int | None = Field(default=None, ge=0, description="Optimizer steps done.")
    total_steps: int | None = Field(default=None, ge=0, description="Optimizer steps planned.")
    epoch: float | None = Field(default=None, ge=0, description="Epochs done (fractional).")
    percent: int | None = Field(default=None, ge=0, le=100, description="step / totalSteps, in %.")
    eta_seconds: int | None = Field(default=None, ge=0, description="Estimated seconds left.")
    loss: float | None = Field(default=None, description="Latest training loss.")
    eval_loss: float | None = Field(default=None, description="Latest evaluation loss.")
    learning_rate: float | None = Field(default=None, ge=0, description="Current learning rate.")
    tokens_per_second: float | None = Field(default=None, ge=0, description="Training throughput.")
    per_device_batch_size: int | None = Field(default=None, ge=1,
                                              description="Rows per device per step in use (lowered on OOM).")
    gradient_accumulation_steps: int | None = Field(default=None, ge=1,
                                                    description="Steps per optimizer update in use (raised on OOM).")
    resumed_from_step: int | None = Field(default=None, ge=0,
                                          description="The checkpoint step this attempt resumed from; "
                                                      "unset when it started from step 0.")
    attempt: int | None = Field(default=None, ge=1,
                                description="Which start of the trainer on this work folder this is (1: the first).")
    updated_at: datetime | None = Field(default=None, description="When this was read.")


class TrainingMetrics(KubeModel):
    """Final figures of a finished run."""

    train_loss: float | None = Field(default=None, description="Mean training loss.")
    eval_loss: float | None = Field(default=None, description="Tuned model's loss on the validation data.")
    base_eval_loss: float | None = Field(default=None, description="Base model's loss on the same data.")
    eval_accuracy: float | None = Field(default=None, ge=0, le=1, description="Tuned accuracy (classification).")
    base_eval_accuracy: float | None = Field(default=None, ge=0, le=1,
                                             description="Base accuracy (classification).")
    trained_tokens: int | None = Field(default=None, ge=0, description="Tokens trained on.")
    train_rows: int | None = Field(default=None, ge=0, description="Training rows used.")
    steps: int | None = Field(default=None, ge=0, description="Optimizer steps run.")
    runtime_seconds: float | None = Field(default=None, ge=0, description="Wall time of training.")
    preference_accuracy: float | None = Field(
        default=None, ge=0, le=1,
        description="dpo: share of validation pairs the tuned model finds more likely chosen than rejected.")
    base_preference_accuracy: float | None = Field(default=None, ge=0, le=1,
                                                   description="dpo: the same share for the base model.")
    reward_margin: float | None = Field(
        default=None,
        description="dpo: mean implicit reward of chosen minus rejected on the validation pairs (beta times the "
                    "log-likelihood margin gained over the base); above 0 means the tuning moved the right way.")
    reward_accuracy: float | None = Field(
        default=None, ge=0, le=1,
        description="dpo: share of validation pairs whose chosen answer gained more likelihood than the rejected.")


class SampleGeneration(KubeModel):
    """One validation prompt answered by the base and the tuned model (greedy decoding, truncated)."""

    prompt: str = Field(description="The prompt (its last user turn), truncated.", max_length=2048)
    reference: str | None = Field(default=None, max_length=2048, description="The answer in the data, truncated.")
    base: str = Field(description="The base model's answer, truncated.", max_length=2048)
    tuned: str = Field(description="The tuned model's answer, truncated.", max_length=2048)


class ModelResult(KubeModel):
    """The published model."""

    repo: str | None = Field(default=None, max_length=200, description="Hub repo.")
    revision: str | None = Field(default=None, max_length=200, description="Commit sha of the push.")
    url: str | None = Field(default=None, max_length=4096, description="Where to see it.")
    path: str | None = Field(default=None, max_length=4096,
                             description="Folder holding the weights: pvc:CLAIM/PATH, or a local folder.")
    base_model_revision: str | None = Field(default=None, max_length=200,
                                            description="Commit sha of the base model used.")


class JobError(KubeModel):
    """Why a run failed."""

    reason: str = Field(description="One CamelCase word, e.g. OOMKilled, AuthFailed, PushFailed.", max_length=1024)
    message: str = Field(default="", description="What happened and what to do.", max_length=32768)


class TuningJobStatus(KubeModel):
    """What the operator knows about the run."""

    phase: TuningJobPhase | None = Field(default=None, description="Where the run is.")
    conditions: list[Condition] = Field(default_factory=list, max_length=32, description="Current states.")
    observed_generation: int | None = Field(default=None, ge=0,
                                            description="metadata.generation the status describes.")
    job_name: str | None = Field(default=None, max_length=253, description="The training Job.")
    world_size: int | None = Field(default=None, ge=1,
                                   description="Training processes: nodes x GPUs per node (1 per CPU-only node).")
    effective_batch_size: int | None = Field(
        default=None, ge=1, description="Rows per optimizer step: perDeviceBatchSize x worldSize x "
                                        "gradientAccumulationSteps.")
    work_dir: str | None = Field(default=None, max_length=4096,
                                 description="Where this run's checkpoints and finished model are kept "
                                             "(pvc:CLAIM/PATH, or the Pod's own disk).")
    start_time: datetime | None = Field(default=None, description="When the trainer started.")
    completion_time: datetime | None = Field(default=None, description="When the run finished.")
    progress: TrainingProgress | None = Field(default=None, description="Latest progress.")
    metrics: TrainingMetrics | None = Field(default=None, description="Final figures.")
    result: ModelResult | None = Field(default=None, description="The published model.")
    log_tail: list[str] = Field(default_factory=list, max_length=200,
                                description="Last lines of the trainer log, secrets redacted.")
    error: JobError | None = Field(default=None, description="Why the run failed.")
    message: str | None = Field(default=None, max_length=32768, description="What is happening, for humans.")
    usage: Usage | None = Field(default=None, description="GPU time, wall time and tokens of the run.")
    pinned: PinnedRevisions | None = Field(default=None,
                                           description="Base model commit, dataset revisions, trainer image digest.")
    samples: list[SampleGeneration] = Field(
        default_factory=list, max_length=10,
        description="A few validation prompts answered by the base and the tuned model (full text in the model card).",
    )
