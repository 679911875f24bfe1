"""What the operator (or the local mode) hands the trainer, and what the trainer hands back.

The operator renders a TrainerConfig or ValidatorConfig into a ConfigMap mounted into the
Pod; the trainer writes a TrainerResult or ValidationReport to the termination-message
path. Both ends validate with these models, so a change here is a change of contract.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Final, Literal

from pydantic import Field

from kubetune.api.common import API_VERSION, KubeModel
from kubetune.api.dataset import (
    ColumnMapping,
    DatasetFormat,
    DatasetValidation,
    DataSource,
    ValidationSummary,
)
from kubetune.api.distributed import LaunchPlan
from kubetune.api.guardrails import PinnedDataset
from kubetune.api.run import RunIdentity
from kubetune.api.tuningjob import TuningJobSpec
from kubetune.api.tuningjobstatus import ModelResult, SampleGeneration, TrainingMetrics
from kubetune.api.volumes import path_inside_volume

# The version of this contract, MAJOR.MINOR. The operator writes it into every config; a
# trainer reads a config of its own major version (dropping, with a log line, fields a newer
# minor added) and refuses any other. Bump the minor for additions an older trainer may
# ignore, the major for anything it would misread.
# 1.1: TrainerConfig.run and workLocation (workDir holds runs/); method.objective and dpo, the preference
# format, hf.streaming, samples. 1.2: spec.guardrails, resources.gpuMemory, the preflight command and its
# PreflightReport. 1.3: resources.nodes, spec.distributed, TrainerConfig.launch (processes and rendezvous: an
# older trainer ignores it and runs one process per Pod).
CONTRACT_VERSION: Final = "1.3"
CONTRACT_VERSION_PATTERN: Final = r"^[0-9]+\.[0-9]+$"

TERMINATION_LOG = "/dev/termination-log"
TERMINATION_MESSAGE_LIMIT = 4096
CONFIG_FILE_NAME = "config.json"
# Environment variable names the trainer reads; the operator sets them from secretKeyRefs.
HF_TOKEN_ENV = "HF_TOKEN"
DATA_TOKEN_ENV = "KUBETUNE_DATA_TOKEN"


def contract_major(version: object) -> int | None:
    """The major number of a MAJOR.MINOR contract version; None for anything else."""
    if not isinstance(version, str) or not re.fullmatch(CONTRACT_VERSION_PATTERN, version):
        return None
    return int(version.split(".", 1)[0])


class FailureReason(StrEnum):
    """Why the trainer or validator stopped without success (TrainerResult.reason)."""

    INVALID_CONFIG = "InvalidConfig"
    AUTH_FAILED = "AuthFailed"
    MODEL_NOT_FOUND = "ModelNotFound"
    DATASET_NOT_FOUND = "DatasetNotFound"
    DATASET_INVALID = "DatasetInvalid"
    UNREACHABLE = "Unreachable"
    UNSUPPORTED_DEVICE = "UnsupportedDevice"
    OUT_OF_MEMORY = "OutOfMemory"
    PUSH_FAILED = "PushFailed"
    INTERRUPTED = "Interrupted"
    TRAINING_FAILED = "TrainingFailed"
    DIVERGED = "Diverged"
    # Preflight findings (kubetune-trainer preflight); WontFit is a warning, never a failure.
    MODEL_GATED = "ModelGated"
    OUTPUT_NOT_WRITABLE = "OutputNotWritable"
    DATA_UNREACHABLE = "DataUnreachable"
    WONT_FIT = "WontFit"


class ExitCode:
    """Exit codes tell retryable from permanent failures (a Job podFailurePolicy can switch on them)."""

    OK = 0
    RETRYABLE = 1  # network, push, interruption: a new attempt may succeed
    PERMANENT = 2  # bad config, bad data, auth, unsupported device: retrying cannot help
    INTERRUPTED = 130  # stopped by SIGTERM/SIGINT after saving a checkpoint: the Job retries it uncounted


class Mounts(KubeModel):
    """Where volumes are mounted in the trainer's filesystem (in a Pod or on the local machine)."""

    pvcs: dict[str, str] = Field(default_factory=dict, description="PVC claim name -> mount folder.")
    config_maps: dict[str, str] = Field(default_factory=dict, description="ConfigMap name -> mount folder.")

    def path_of_pvc(self, claim_name: str, path: str) -> str:
        """Where `path` inside the claim's volume is; KeyError when the claim is not mounted,
        VolumePathError when the path would leave the volume."""
        if claim_name not in self.pvcs:
            raise KeyError(f"volume claim {claim_name!r} is not mounted (known: {sorted(self.pvcs) or 'none'})")
        return str(PurePosixPath(self.pvcs[claim_name]) / path_inside_volume(path))

    def path_of_config_map(self, name: str, key: str) -> str:
        if name not in self.config_maps:
            raise KeyError(f"ConfigMap {name!r} is not mounted (known: {sorted(self.config_maps) or 'none'})")
        return str(PurePosixPath(self.config_maps[name]) / key)


class TrainerConfig(KubeModel):
    """The resolved TuningJob: every dataset entry carries its source, format and pinned revision."""

    api_version: Literal["kubetune.io/v1alpha1"] = Field(default=API_VERSION)
    kind: Literal["TrainerConfig"] = Field(default="TrainerConfig")
    contract_version: str = Field(default=CONTRACT_VERSION, pattern=CONTRACT_VERSION_PATTERN,
                                  description="The operator/trainer contract version the config follows.")
    name: str = Field(description="TuningJob name.")
    namespace: str = Field(default="default", description="TuningJob namespace.")
    spec: TuningJobSpec = Field(description="The job's spec with Dataset references replaced by their sources.")
    dataset_names: list[str] = Field(default_factory=list, description="Names of the datasets, for the model card.")
    work_dir: str = Field(default="/workspace",
                          description="The work volume's folder: each run works in <workDir>/runs/<uid>-<runHash>/.")
    work_location: str | None = Field(
        default=None, max_length=4096,
        description="workDir as people find it (pvc:CLAIM/PATH), for messages and results; workDir when unset.",
    )
    run: RunIdentity | None = Field(
        default=None,
        description="The run's identity; when unset the trainer derives it from namespace, name and the spec.",
    )
    mounts: Mounts = Field(default_factory=Mounts, description="Where volumes are mounted.")
    allow_private_urls: bool = Field(default=False, description="Allow URLs on private/loopback addresses.")
    result_path: str = Field(default=TERMINATION_LOG, description="Where the TrainerResult is written.")
    launch: LaunchPlan = Field(default_factory=LaunchPlan,
                               description="Training processes and their rendezvous (one process by default).")


class ValidatorConfig(KubeModel):
    """One Dataset to validate."""

    api_version: Literal["kubetune.io/v1alpha1"] = Field(default=API_VERSION)
    kind: Literal["ValidatorConfig"] = Field(default="ValidatorConfig")
    contract_version: str = Field(default=CONTRACT_VERSION, pattern=CONTRACT_VERSION_PATTERN,
                                  description="The operator/trainer contract version the config follows.")
    name: str = Field(description="Dataset name.")
    namespace: str = Field(default="default", description="Dataset namespace.")
    source: DataSource = Field(description="Where the data lives.")
    format: DatasetFormat = Field(default=DatasetFormat.AUTO, description="Declared format.")
    columns: ColumnMapping = Field(default_factory=ColumnMapping, description="Column names.")
    labels: list[str] = Field(default_factory=list, description="Allowed labels (classification).")
    validation: DatasetValidation = Field(default_factory=DatasetValidation, description="Settings.")
    mounts: Mounts = Field(default_factory=Mounts, description="Where volumes are mounted.")
    allow_private_urls: bool = Field(default=False, description="Allow URLs on private/loopback addresses.")
    result_path: str = Field(default=TERMINATION_LOG, description="Where the ValidationReport is written.")


# How a failed process's result message begins when a collective broke under it: the cause is another's.
PEER_FAILURE: Final = "another process of this distributed run failed or could not be reached"


class TrainerResult(KubeModel):
    """The trainer's last word, written to the termination message (at most 4096 bytes).

    In a multi-node run the Pod with index 0 writes the run's result; a Pod of another node writes
    its own only when it failed, so that a failure its peers merely followed can be told by its cause.
    """

    status: Literal["Succeeded", "Failed"] = Field(description="How the run ended.")
    reason: FailureReason | None = Field(default=None, description="Why it failed.")
    message: str | None = Field(default=None, max_length=2048, description="What happened, token redacted.")
    retryable: bool | None = Field(default=None, description="Whether a new attempt may succeed.")
    model: ModelResult | None = Field(default=None, description="Where the model is.")
    metrics: TrainingMetrics | None = Field(default=None, description="Final figures.")
    samples: list[SampleGeneration] = Field(default_factory=list, max_length=10,
                                            description="Base vs tuned answers to a few validation prompts.")


def followed_another_failure(result: TrainerResult) -> bool:
    """Whether a failed process only followed another's failure: torn down (Interrupted), or a
    collective broke under it (PEER_FAILURE). The cause is then another process's result."""
    return result.status == "Failed" and (result.reason is FailureReason.INTERRUPTED
                                          or (result.message or "").startswith(PEER_FAILURE))


class PreflightIssue(KubeModel):
    """One finding of the preflight: an Error ends the run before training, a Warning does not."""

    reason: FailureReason = Field(description="AuthFailed, ModelNotFound, ModelGated, OutputNotWritable, "
                                              "DataUnreachable, Unreachable, WontFit ...")
    severity: Literal["Error", "Warning"] = Field(description="Error (the run cannot succeed) or Warning.")
    message: str = Field(max_length=1024, description="What was found and what to fix, token redacted.")


class MemoryEstimate(KubeModel):
    """A rough per-GPU memory need (see kubetune_trainer.preflight.memory for the model of it)."""

    bytes_per_gpu: int = Field(ge=0, description="Estimated peak bytes on one GPU.")
    gpu_bytes: int | None = Field(default=None, ge=0, description="Memory of one GPU, as configured.")
    fits: bool | None = Field(default=None, description="Whether the estimate fits (unset: no GPU to compare).")
    largest_fitting_batch: int | None = Field(default=None, ge=0,
                                              description="Largest perDeviceBatchSize estimated to fit (0: none).")


class PreflightReport(KubeModel):
    """The preflight's last word, written to the termination message (at most 4096 bytes)."""

    outcome: Literal["Passed", "Failed"] = Field(description="Failed when any issue is an Error.")
    retryable: bool | None = Field(default=None, description="Whether a new attempt may pass (network trouble).")
    issues: list[PreflightIssue] = Field(default_factory=list, max_length=16, description="Errors and warnings.")
    checked: list[str] = Field(default_factory=list, max_length=16,
                               description="What was checked (token, baseModel, output, data, memory).")
    base_model_revision: str | None = Field(default=None, max_length=200,
                                            description="Commit sha the base model revision resolved to.")
    datasets: list[PinnedDataset] = Field(default_factory=list, max_length=128,
                                          description="Inline Hub sources and the commit each resolved to.")
    memory: MemoryEstimate | None = Field(default=None, description="The GPU-memory estimate.")

    @property
    def errors(self) -> list[PreflightIssue]:
        return [i for i in self.issues if i.severity == "Error"]

    @property
    def warnings(self) -> list[PreflightIssue]:
        return [i for i in self.issues if i.severity == "Warning"]


class ValidationReport(ValidationSummary):
    """The validator's last word, written to the termination message (at most 4096 bytes)."""

    outcome: Literal["Ready", "Invalid", "Failed"] = Field(description="Ready, Invalid (bad rows) or Failed.")
    reason: FailureReason | None = Field(default=None, description="Why it is Invalid or Failed.")
    message: str | None = Field(default=None, max_length=2048, description="What happened, token redacted.")
