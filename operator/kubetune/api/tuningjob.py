"""The TuningJob resource: one fine-tuning run, from base model and data to a published model."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from kubetune.api.common import (
    API_VERSION,
    BYTE_QUANTITY,
    DNS_SUBDOMAIN,
    HUB_REPO,
    Condition,
    KubeModel,
    ObjectMeta,
    SecretKeyRef,
)
from kubetune.api.dataset import ColumnMapping, DatasetFormat, DataSource, PvcSource
from kubetune.api.distributed import DistributedSpec, ParallelStrategy
from kubetune.api.guardrails import GuardrailsSpec, PinnedRevisions, Usage
from kubetune.api.volumes import VolumePathError, parse_pvc_path
from kubetune.api.workvolume import WorkVolumeSpec


class TuningMethod(StrEnum):
    LORA = "LoRA"
    QLORA = "QLoRA"
    FULL = "Full"


class Objective(StrEnum):
    SFT = "sft"
    DPO = "dpo"


class Precision(StrEnum):
    BF16 = "bf16"
    FP16 = "fp16"
    FP32 = "fp32"


class Task(StrEnum):
    TEXT_GENERATION = "textGeneration"
    TEXT_CLASSIFICATION = "textClassification"


class LRScheduler(StrEnum):
    LINEAR = "linear"
    COSINE = "cosine"
    CONSTANT = "constant"
    CONSTANT_WITH_WARMUP = "constantWithWarmup"


class QuantType(StrEnum):
    NF4 = "nf4"
    FP4 = "fp4"


class TuningJobPhase(StrEnum):
    PENDING = "Pending"
    WAITING_FOR_DATA = "WaitingForData"
    STARTING = "Starting"
    RUNNING = "Running"
    PUBLISHING = "Publishing"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


class ScratchModel(KubeModel):
    """A tiny randomly initialised Llama with a tokenizer trained on the data: for smoke tests and demos."""

    hidden_size: int = Field(default=64, ge=8, le=4096, description="Hidden size.")
    intermediate_size: int = Field(default=128, ge=8, le=16384, description="MLP size.")
    num_layers: int = Field(default=2, ge=1, le=48, description="Decoder layers.")
    num_heads: int = Field(default=4, ge=1, le=64, description="Attention heads.")
    num_key_value_heads: int = Field(default=2, ge=1, le=64, description="Key/value heads (GQA).")
    vocab_size: int = Field(default=512, ge=64, le=65536, description="Tokenizer vocabulary size.")

    @model_validator(mode="after")
    def _heads_divide(self) -> ScratchModel:
        if self.hidden_size % self.num_heads:
            raise ValueError("hiddenSize must be a multiple of numHeads")
        if self.num_heads % self.num_key_value_heads:
            raise ValueError("numHeads must be a multiple of numKeyValueHeads")
        return self


class BaseModelSpec(KubeModel):
    """The model to fine-tune. Set exactly one of repo, path, scratch."""

    repo: str | None = Field(default=None, max_length=200, pattern=HUB_REPO,
                             description="Hugging Face model repo, e.g. mistralai/Ministral-8B-Instruct-2410.")
    revision: str = Field(default="main", min_length=1, max_length=200,
                          description="Branch, tag or commit sha of repo; the commit used is reported.")
    path: str | None = Field(default=None, max_length=4096,
                             description="A model folder on a mounted volume (pvc:CLAIM/PATH or an absolute path).")
    scratch: ScratchModel | None = Field(default=None, description="A tiny random model, for smoke tests.")
    endpoint: str | None = Field(default=None, pattern=r"^https?://", max_length=2048,
                                 description="Hub endpoint for a self-hosted hub; the public hub when unset.")

    @field_validator("path")
    @classmethod
    def _pvc_path_inside_its_volume(cls, path: str | None) -> str | None:
        try:
            parse_pvc_path(path or "")
        except VolumePathError as error:
            raise ValueError(error.problem) from None
        return path

    @model_validator(mode="after")
    def _exactly_one(self) -> BaseModelSpec:
        given = [n for n, v in (("repo", self.repo), ("path", self.path), ("scratch", self.scratch)) if v is not None]
        if len(given) != 1:
            raise ValueError(f"set exactly one of repo, path, scratch (found: {', '.join(given) or 'none'})")
        return self

    def describe(self) -> str:
        if self.repo is not None:
            return self.repo
        if self.path is not None:
            return self.path
        return "scratch"


class LoraSpec(KubeModel):
    """LoRA adapter shape."""

    r: int = Field(default=16, ge=1, le=1024, description="Rank of the update matrices.")
    alpha: int = Field(default=32, ge=1, le=4096, description="Scaling numerator (scale = alpha / r).")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["all-linear"], min_length=1, max_length=64,
        description="Module names to adapt; all-linear adapts every linear layer but the output head.",
    )


class QuantizationSpec(KubeModel):
    """4-bit quantization of the frozen base model (QLoRA, bitsandbytes, CUDA only)."""

    bits: Literal[4] = Field(default=4, description="Bits per weight; 4 is supported.")
    quant_type: QuantType = Field(default=QuantType.NF4, description="nf4 or fp4.")
    double_quant: bool = Field(default=True, description="Quantize the quantization constants too.")


class DpoSpec(KubeModel):
    """Direct Preference Optimization settings (objective dpo)."""

    beta: float = Field(
        default=0.1, gt=0, le=10,
        description="How far the tuned model may drift from the base model: higher keeps it closer "
                    "(trl's beta; 0.1 is the usual start, 0.01-0.5 the usual range).",
    )


class MethodSpec(KubeModel):
    """How the weights are trained."""

    type: TuningMethod = Field(default=TuningMethod.LORA, description="LoRA, QLoRA or Full.")
    objective: Objective = Field(
        default=Objective.SFT,
        description="sft: learn the answers in the data (supervised fine-tuning); dpo: learn to prefer the chosen "
                    "answer over the rejected one (Direct Preference Optimization, needs preference data). With "
                    "LoRA the reference model is the base itself (the adapter switched off).",
    )
    dpo: DpoSpec = Field(default_factory=DpoSpec, description="DPO settings, used when objective is dpo.")
    lora: LoraSpec = Field(default_factory=LoraSpec, description="Adapter shape for LoRA and QLoRA.")
    quantization: QuantizationSpec | None = Field(default=None, description="Required for QLoRA.")

    @model_validator(mode="after")
    def _quantization_matches(self) -> MethodSpec:
        if self.type is TuningMethod.QLORA and self.quantization is None:
            raise ValueError("quantization is required when type is QLoRA: add quantization: {bits: 4, quantType: nf4}")
        if self.type is not TuningMethod.QLORA and self.quantization is not None:
            raise ValueError(f"quantization applies to QLoRA only: remove it or set type: QLoRA (type is {self.type})")
        return self


class ClassificationSpec(KubeModel):
    """Labels of a textClassification task."""

    labels: list[str] = Field(default_factory=list, max_length=10000,
                              description="Class labels; taken from the data when empty.")
    multi_label: bool = Field(default=False, description="A row may carry several labels.")


class DatasetEntry(KubeModel):
    """One dataset of a mix: a Dataset in the same namespace, or an inline source."""

    dataset: str | None = Field(default=None, max_length=253, pattern=DNS_SUBDOMAIN,
                                description="Name of a Dataset in the same namespace.")
    source: DataSource | None = Field(default=None, description="An inline source, validated when the job starts.")
    format: DatasetFormat = Field(default=DatasetFormat.AUTO, description="Row format of an inline source.")
    columns: ColumnMapping = Field(default_factory=ColumnMapping, description="Column names of an inline source.")
    weight: float = Field(default=1.0, gt=0, le=1000, description="Relative share of this dataset in the mix.")
    token_secret_ref: SecretKeyRef | None = Field(default=None, description="Token for a private inline source.")

    @model_validator(mode="after")
    def _exactly_one(self) -> DatasetEntry:
        if (self.dataset is None) == (self.source is None):
            raise ValueError("set exactly one of dataset (a Dataset name) or source (an inline source)")
        return self

    def describe(self) -> str:
        return self.dataset if self.dataset is not None else self.source.describe()  # type: ignore[union-attr]


class DatasetsSpec(KubeModel):
    """Training and validation data."""

    train: list[DatasetEntry] = Field(min_length=1, max_length=64, description="Training datasets, mixed by weight.")
    validation: list[DatasetEntry] = Field(default_factory=list, max_length=64, description="Validation datasets.")
    validation_split: float | None = Field(
        default=None, gt=0, le=0.5,
        description="Share of the training rows held out for validation when no validation datasets are given.",
    )

    @model_validator(mode="after")
    def _one_validation_kind(self) -> DatasetsSpec:
        if self.validation and self.validation_split is not None:
            raise ValueError("set validation or validationSplit, not both")
        return self


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


class OutputSpec(KubeModel):
    """Where the tuned model goes: a Hub repo, a volume, or both."""

    repo: str | None = Field(default=None, max_length=200, pattern=HUB_REPO,
                             description="Hub repo to push to, e.g. my-org/ministral-finetuned.")
    private: bool = Field(default=True, description="Create the Hub repo as private.")
    merge: bool = Field(default=False, description="Also push the base model merged with the adapter.")
    endpoint: str | None = Field(default=None, pattern=r"^https?://", max_length=2048,
                                 description="Hub endpoint for a self-hosted hub; the public hub when unset.")
    pvc: PvcSource | None = Field(
        default=None,
        description="A folder on a volume that receives the finished model in final/ (and merged/); unless "
                    "workVolume says otherwise, the run's checkpoints live on this claim too, under path/runs/.",
    )

    @model_validator(mode="after")
    def _somewhere(self) -> OutputSpec:
        if self.repo is None and self.pvc is None:
            raise ValueError("set repo (a Hub repo) or pvc (a folder on a volume), or both")
        return self

    def describe(self) -> str:
        if self.repo is not None:
            return self.repo
        assert self.pvc is not None
        return f"pvc:{self.pvc.claim_name}/{self.pvc.path}"


class ResourcesSpec(KubeModel):
    """What one training Pod asks for, and how many such Pods (nodes) the run spans."""

    gpus: int = Field(default=1, ge=0, le=16,
                      description="GPUs per node; each runs one training process (torchrun). 0 trains on CPU.")
    nodes: int = Field(default=1, ge=1, le=64,
                       description="Nodes the run spans: one Pod each (an Indexed Job with a rendezvous on Pod 0), "
                                   "each with `gpus` GPUs. World size = nodes x max(gpus, 1).")
    gpu_resource_name: str | None = Field(
        default=None, max_length=253,
        description="Extended resource name of the GPUs; the operator's default (nvidia.com/gpu) when unset.",
    )
    cpu: str | None = Field(default=None, pattern=r"^[0-9]+(\.[0-9]+)?m?$", max_length=32,
                            description="CPU request, e.g. 8 or 500m; the operator's default when unset.")
    memory: str | None = Field(default=None, pattern=BYTE_QUANTITY, max_length=32,
                               description="Memory request and limit, e.g. 64Gi; the operator's default when unset.")
    shm_size: str = Field(default="8Gi", pattern=BYTE_QUANTITY, max_length=32,
                          description="Size of the memory-backed /dev/shm.")
    gpu_memory: str | None = Field(
        default=None, pattern=BYTE_QUANTITY, max_length=32,
        description="Memory of one GPU (e.g. 80Gi), for the preflight's fit estimate; the operator's default "
                    "when unset.",
    )


class TuningJobSpec(KubeModel):
    """One fine-tuning run."""

    base_model: BaseModelSpec = Field(description="The model to fine-tune.")
    task: Task = Field(default=Task.TEXT_GENERATION, description="textGeneration or textClassification.")
    classification: ClassificationSpec | None = Field(default=None, description="Labels, for textClassification.")
    method: MethodSpec = Field(default_factory=MethodSpec, description="LoRA, QLoRA or Full.")
    datasets: DatasetsSpec = Field(description="Training and validation data.")
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters, description="Hyperparameters.")
    output: OutputSpec = Field(description="Where the tuned model goes.")
    hf_token_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret with a Hugging Face token (gated models, private data, pushing).",
    )
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="GPUs, nodes, CPU and memory.")
    distributed: DistributedSpec = Field(default_factory=DistributedSpec,
                                         description="DDP or FSDP, when the run has several processes.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels the trainer Pod needs.")
    tolerations: list[dict[str, Any]] = Field(default_factory=list, max_length=64,
                                              description="Tolerations of the trainer Pod (core/v1 Toleration).")
    priority_class_name: str | None = Field(default=None, max_length=253, description="PriorityClass of the Pod.")
    queue_name: str | None = Field(default=None, max_length=253,
                                   description="Kueue LocalQueue; the Job is created suspended for Kueue to admit.")
    service_account_name: str | None = Field(default=None, max_length=253,
                                             description="ServiceAccount of the trainer Pod.")
    trainer_image: str | None = Field(default=None, max_length=1024,
                                      description="Trainer image; the operator's default when unset.")
    suspend: bool = Field(default=False, description="Suspend the run (the Pod is stopped); false resumes it.")
    active_deadline_seconds: int | None = Field(default=None, ge=1, le=31_536_000,
                                                description="Fail the run after this long.")
    backoff_limit: int = Field(default=2, ge=0, le=100, description="Pod retries before the run fails.")
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0, le=31_536_000, description="Delete the finished Job (not the TuningJob) after this."
    )
    guardrails: GuardrailsSpec = Field(default_factory=GuardrailsSpec,
                                       description="Preflight checks, out-of-memory retry, divergence stop.")
    work_volume: WorkVolumeSpec = Field(
        default_factory=WorkVolumeSpec,
        description="Where checkpoints and the finished model are kept so a new Pod (retry, eviction, "
                    "preemption, suspend and resume) continues from the last checkpoint.",
    )
    termination_grace_period_seconds: int | None = Field(
        default=None, ge=30, le=86_400,
        description="Seconds a stopped trainer Pod gets to save a checkpoint before it is killed; the "
                    "operator's default when unset.",
    )

    @model_validator(mode="after")
    def _objective_fits(self) -> TuningJobSpec:
        problem = self.objective_mismatch()
        if problem:
            raise ValueError(problem)
        return self

    def objective_mismatch(self) -> str | None:
        """Why the data or task does not fit method.objective, or None. Entries whose format is not known yet
        (a Dataset reference, or auto) are checked again once resolved, and by the trainer."""
        dpo = self.method.objective is Objective.DPO
        if dpo and self.task is Task.TEXT_CLASSIFICATION:
            return "method.objective dpo trains text generation: remove it or set task: textGeneration"
        for entry in [*self.datasets.train, *self.datasets.validation]:
            if entry.source is None or entry.format is DatasetFormat.AUTO:
                continue
            if dpo and entry.format is not DatasetFormat.PREFERENCE:
                return (f"method.objective dpo needs preference data (prompt/chosen/rejected), but dataset "
                        f"{entry.describe()} has format {entry.format}: give preference data, or set "
                        "method.objective: sft")
            if not dpo and entry.format is DatasetFormat.PREFERENCE:
                return f"dataset {entry.describe()} holds preference pairs: set method.objective: dpo to train on them"
        return None

    @model_validator(mode="after")
    def _classification_has_labels(self) -> TuningJobSpec:
        if self.task is Task.TEXT_CLASSIFICATION:
            has_labels = self.classification is not None and bool(self.classification.labels)
            has_class_data = any(
                e.dataset is not None or e.format in (DatasetFormat.CLASSIFICATION, DatasetFormat.AUTO)
                for e in self.datasets.train
            )
            if not (has_labels or has_class_data):
                raise ValueError(
                    "textClassification needs classification.labels or a classification dataset "
                    "(format: classification)"
                )
        elif self.classification is not None:
            raise ValueError("classification applies to task textClassification only: remove it or set the task")
        return self

    @model_validator(mode="after")
    def _strategy_fits_method(self) -> TuningJobSpec:
        if self.distributed.strategy is ParallelStrategy.FSDP and self.method.type is TuningMethod.QLORA:
            raise ValueError("distributed.strategy FSDP does not combine with QLoRA (4-bit weights are not "
                             "sharded): use DDP or Auto, or method LoRA/Full")
        modes = self.work_volume.access_modes
        if self.resources.nodes > 1 and modes is not None and "ReadWriteMany" not in modes:
            raise ValueError(f"workVolume.accessModes {modes}: a run on {self.resources.nodes} nodes mounts its work "
                             "volume on each of them: use [ReadWriteMany] (the default for several nodes), or "
                             "workVolume.ephemeral")
        if self.method.objective is Objective.DPO and (self.resources.nodes > 1 or self.resources.gpus > 1):
            raise ValueError("method.objective dpo trains in one process for now: set resources.gpus to 1 (or 0) "
                             "and resources.nodes to 1")
        return self


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


class TuningJob(KubeModel):
    """A fine-tuning run: base model + data + method -> a tuned model on the Hub or a volume."""

    api_version: Literal["kubetune.io/v1alpha1"] = Field(default=API_VERSION, description="kubetune.io/v1alpha1")
    kind: Literal["TuningJob"] = Field(default="TuningJob", description="TuningJob")
    metadata: ObjectMeta = Field(description="Standard object metadata.")
    spec: TuningJobSpec = Field(description="The run.")
    status: TuningJobStatus | None = Field(default=None, description="What the operator knows.")
