"""The API of kubetune: pydantic models of TuningJob and Dataset, and the trainer contract.

These models are the single source of truth: the CRDs are generated from them, the operator
validates with them, the trainer and the local mode read their configs with them.
"""

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
from kubetune.api.tuningjob import (
    BaseModelSpec,
    ClassificationSpec,
    DatasetEntry,
    DatasetsSpec,
    Hyperparameters,
    JobError,
    LoraSpec,
    LRScheduler,
    MethodSpec,
    ModelResult,
    OutputSpec,
    Precision,
    QuantizationSpec,
    ResourcesSpec,
    ScratchModel,
    Task,
    TrainingMetrics,
    TrainingProgress,
    TuningJob,
    TuningJobPhase,
    TuningJobSpec,
    TuningJobStatus,
    TuningMethod,
)

__all__ = [
    "API_VERSION", "CONTRACT_VERSION", "GROUP", "TERMINATION_MESSAGE_LIMIT", "VERSION",
    "BaseModelSpec", "ClassificationSpec", "ColumnMapping", "Condition", "ConditionStatus", "ConfigMapSource",
    "DataSource", "Dataset", "DatasetEntry", "DatasetFormat", "DatasetPhase", "DatasetSpec", "DatasetStatus",
    "DatasetValidation", "DatasetsSpec", "DistributedSpec", "ExitCode", "FailureReason", "HubSource",
    "Hyperparameters", "JobError", "KubeModel", "LRScheduler", "LaunchPlan", "LoraSpec", "MethodSpec", "ModelResult",
    "Mounts", "ObjectMeta", "OutputSpec", "ParallelStrategy", "Precision", "PvcSource", "QuantizationSpec",
    "ResourcesSpec", "RowError", "ScratchModel", "SecretKeyRef", "Task", "TokenStats", "TrainerConfig",
    "TrainerResult", "TrainingMetrics", "TrainingProgress", "TuningJob", "TuningJobPhase", "TuningJobSpec",
    "TuningJobStatus", "TuningMethod", "UrlSource", "ValidationReport", "ValidationSummary", "ValidatorConfig",
]
