"""The TuningJob resource: one fine-tuning run, from base model and data to a published model.

The spec's larger parts have their own modules (basemodel.py, method.py, hyperparameters.py),
as does the status (tuningjobstatus.py); here are the spec's other fields and the checks across them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, model_validator

from kubetune.api.basemodel import BaseModelSpec
from kubetune.api.common import (
    API_VERSION,
    BYTE_QUANTITY,
    DNS_SUBDOMAIN,
    HUB_REPO,
    KubeModel,
    ObjectMeta,
    SecretKeyRef,
)
from kubetune.api.dataset import ColumnMapping, DatasetFormat, DataSource, PvcSource
from kubetune.api.distributed import DistributedSpec, ParallelStrategy
from kubetune.api.guardrails import GuardrailsSpec
from kubetune.api.hyperparameters import Hyperparameters
from kubetune.api.method import MethodSpec, Objective, TuningMethod
from kubetune.api.tuningjobstatus import TuningJobStatus
from kubetune.api.workvolume import WorkVolumeSpec


class Task(StrEnum):
    TEXT_GENERATION = "textGeneration"
    TEXT_CLASSIFICATION = "textClassification"


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


class TuningJob(KubeModel):
    """A fine-tuning run: base model + data + method -> a tuned model on the Hub or a volume."""

    api_version: Literal["kubetune.io/v1alpha1"] = Field(default=API_VERSION, description="kubetune.io/v1alpha1")
    kind: Literal["TuningJob"] = Field(default="TuningJob", description="TuningJob")
    metadata: ObjectMeta = Field(description="Standard object metadata.")
    spec: TuningJobSpec = Field(description="The run.")
    status: TuningJobStatus | None = Field(default=None, description="What the operator knows.")
