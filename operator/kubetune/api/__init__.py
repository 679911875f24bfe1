"""The API of kubetune: pydantic models of TuningJob and Dataset, and the trainer contract.

These models are the single source of truth: the CRDs are generated from them, the operator
validates with them, the trainer and the local mode read their configs with them.
"""

from kubetune.api.basemodel import BaseModelSpec, ScratchModel
from kubetune.api.common import (
    API_VERSION,
    GROUP,
    VERSION,
    Condition,
    ConditionStatus,
    KubeModel,
    ObjectMeta,
    SecretKeyRef,
)
from kubetune.api.contract import (
    CONTRACT_VERSION,
    TERMINATION_MESSAGE_LIMIT,
    ExitCode,
    FailureReason,
    Mounts,
    TrainerConfig,
    TrainerResult,
    ValidationReport,
    ValidatorConfig,
)
from kubetune.api.dataset import (
    ColumnMapping,
    ConfigMapSource,
    Dataset,
    DatasetFormat,
    DatasetPhase,
    DatasetSpec,
    DatasetStatus,
    DatasetValidation,
    DataSource,
    HubSource,
    PvcSource,
    RowError,
    TokenStats,
    UrlSource,
    ValidationSummary,
)
from kubetune.api.distributed import DistributedSpec, LaunchPlan, ParallelStrategy
from kubetune.api.hyperparameters import Hyperparameters, LRScheduler, Precision
from kubetune.api.method import DpoSpec, LoraSpec, MethodSpec, Objective, QuantizationSpec, TuningMethod
from kubetune.api.run import RunIdentity, run_hash
from kubetune.api.tuningjob import (
    ClassificationSpec,
    DatasetEntry,
    DatasetsSpec,
    OutputSpec,
    ResourcesSpec,
    Task,
    TuningJob,
    TuningJobSpec,
)
from kubetune.api.tuningjobstatus import (
    JobError,
    ModelResult,
    SampleGeneration,
    TrainingMetrics,
    TrainingProgress,
    TuningJobPhase,
    TuningJobStatus,
)
from kubetune.api.workvolume import RetainPolicy, WorkVolumeSpec

__all__ = [
    "API_VERSION", "CONTRACT_VERSION", "GROUP", "TERMINATION_MESSAGE_LIMIT", "VERSION", "BaseModelSpec",
    "ClassificationSpec", "ColumnMapping", "Condition", "ConditionStatus", "ConfigMapSource", "DataSource", "Dataset",
    "DatasetEntry", "DatasetFormat", "DatasetPhase", "DatasetSpec", "DatasetStatus", "DatasetValidation",
    "DatasetsSpec", "DistributedSpec", "DpoSpec", "ExitCode", "FailureReason", "HubSource", "Hyperparameters",
    "JobError", "KubeModel", "LRScheduler", "LaunchPlan", "LoraSpec", "MethodSpec", "ModelResult", "Mounts",
    "ObjectMeta", "Objective", "OutputSpec", "ParallelStrategy", "Precision", "PvcSource", "QuantizationSpec",
    "ResourcesSpec", "RetainPolicy", "RowError", "RunIdentity", "SampleGeneration", "ScratchModel", "SecretKeyRef",
    "Task", "TokenStats", "TrainerConfig", "TrainerResult", "TrainingMetrics", "TrainingProgress", "TuningJob",
    "TuningJobPhase", "TuningJobSpec", "TuningJobStatus", "TuningMethod", "UrlSource", "ValidationReport",
    "ValidationSummary", "ValidatorConfig", "WorkVolumeSpec", "run_hash",
]
