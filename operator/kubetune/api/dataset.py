"""The Dataset resource: where training data lives, what shape it has, and what validation found."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

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
from kubetune.api.volumes import VolumePathError, path_inside_volume


class DatasetFormat(StrEnum):
    """How rows are shaped. `auto` detects it from the first rows."""

    AUTO = "auto"
    ALPACA = "alpaca"
    MESSAGES = "messages"
    SHAREGPT = "sharegpt"
    YANDEX = "yandex"
    PROMPT_COMPLETION = "promptCompletion"
    TEXT = "text"
    CLASSIFICATION = "classification"
    PREFERENCE = "preference"


class DatasetPhase(StrEnum):
    PENDING = "Pending"
    VALIDATING = "Validating"
    READY = "Ready"
    INVALID = "Invalid"
    FAILED = "Failed"


class HubSource(KubeModel):
    """A dataset repository on a Hugging Face Hub."""

    repo: str = Field(description="Dataset repo id, e.g. tatsu-lab/alpaca.", max_length=200, pattern=HUB_REPO)
    revision: str = Field(
        default="main", description="Branch, tag or commit sha; resolved to a commit sha by validation.",
        min_length=1, max_length=200,
    )
    split: str = Field(default="train", min_length=1, max_length=100,
                       description="Split to read, by its exact name (train does not match train_sft).")
    subset: str | None = Field(
        default=None, max_length=200,
        description="Configuration (subset) name, as the repo's README configs declare it; in a repo without "
                    "configs, a folder holding the data. Required when the repo has several configs and no default.",
    )
    files: list[str] = Field(
        default_factory=list, max_length=1000,
        description="Files or glob patterns in the repo to read instead of the split's own files (they become "
                    "the split named in split).",
    )
    streaming: bool = Field(
        default=True,
        description="Read the rows as they download, without a local copy (data larger than memory or disk); "
                    "false downloads the files into the datasets cache first.",
    )
    endpoint: str | None = Field(
        default=None, pattern=r"^https?://", max_length=2048,
        description="Hub endpoint for a self-hosted hub; the public hub when unset.",
    )


class UrlSource(KubeModel):
    """A file served over HTTPS: JSONL, JSON, CSV or Parquet, optionally gzip-compressed."""

    url: str = Field(description="https:// URL of the file.", pattern=r"^https://", max_length=4096)
    max_size: str = Field(
        default="20Gi", pattern=BYTE_QUANTITY, max_length=32,
        description="Largest download accepted, as a quantity (e.g. 500Mi, 20Gi). A larger file fails with "
                    "DatasetInvalid instead of filling the Pod's disk; raise it, and the Pod's ephemeral storage, "
                    "for bigger files.",
    )


class ConfigMapSource(KubeModel):
    """Small inline data (up to about 1 MiB of JSONL) in a ConfigMap of the same namespace."""

    name: str = Field(description="Name of the ConfigMap.", min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    key: str = Field(default="data.jsonl", description="Key holding the data.", min_length=1, max_length=253)


class PvcSource(KubeModel):
    """A file or folder on a PersistentVolumeClaim of the same namespace, mounted read-only."""

    claim_name: str = Field(description="Name of the PersistentVolumeClaim.", min_length=1, max_length=253,
                            pattern=DNS_SUBDOMAIN)
    path: str = Field(description="File or folder inside the volume, relative to its root.",
                      min_length=1, max_length=4096)

    @field_validator("path")
    @classmethod
    def _inside_the_volume(cls, path: str) -> str:
        try:
            path_inside_volume(path)
        except VolumePathError as error:
            raise ValueError(error.problem) from None
        return path


class DataSource(KubeModel):
    """Where the data lives. Set exactly one of hf, url, configMap, pvc."""

    hf: HubSource | None = Field(default=None, description="A Hugging Face Hub dataset repo.")
    url: UrlSource | None = Field(default=None, description="An https URL.")
    config_map: ConfigMapSource | None = Field(default=None, description="A key of a ConfigMap.")
    pvc: PvcSource | None = Field(default=None, description="A path on a PersistentVolumeClaim.")

    @model_validator(mode="after")
    def _exactly_one(self) -> DataSource:
        given = [name for name in ("hf", "url", "configMap", "pvc")
                 if getattr(self, _SOURCE_ATTRS[name]) is not None]
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise ValueError(f"set exactly one of hf, url, configMap, pvc (found: {found})")
        return self

    @property
    def kind(self) -> Literal["hf", "url", "configMap", "pvc"]:
        for name, attr in _SOURCE_ATTRS.items():
            if getattr(self, attr) is not None:
                return name  # type: ignore[return-value]
        raise AssertionError("validated DataSource has a source")

    def describe(self) -> str:
        """A short human-readable location, as shown in the Source printer column."""
        if self.hf is not None:
            return f"hf:{self.hf.repo}"
        if self.url is not None:
            return self.url.url
        if self.config_map is not None:
            return f"configmap:{self.config_map.name}/{self.config_map.key}"
        assert self.pvc is not None
        return f"pvc:{self.pvc.claim_name}/{self.pvc.path}"


_SOURCE_ATTRS = {"hf": "hf", "url": "url", "configMap": "config_map", "pvc": "pvc"}


class ColumnMapping(KubeModel):
    """Names of the columns in the data when they differ from the format's usual names."""

    instruction: str | None = Field(default=None, description="alpaca: instruction column.", max_length=256)
    input: str | None = Field(default=None, description="alpaca: input (context) column.", max_length=256)
    output: str | None = Field(default=None, description="alpaca: output column.", max_length=256)
    messages: str | None = Field(default=None, description="messages/sharegpt: the list of turns.",
                                 max_length=256)
    system: str | None = Field(default=None, description="A column with a system prompt for every row.",
                               max_length=256)
    prompt: str | None = Field(default=None, description="promptCompletion: prompt column.", max_length=256)
    completion: str | None = Field(default=None, description="promptCompletion: completion column.",
                                   max_length=256)
    request: str | None = Field(default=None, description="yandex: request column.", max_length=256)
    response: str | None = Field(default=None, description="yandex: response column.", max_length=256)
    text: str | None = Field(default=None, description="text/classification: text column.", max_length=256)
    label: str | None = Field(default=None, description="classification: label column (a string or a list).",
                              max_length=256)
    chosen: str | None = Field(default=None, description="preference: the preferred answer column.",
                               max_length=256)
    rejected: str | None = Field(default=None, description="preference: the dispreferred answer column.",
                                 max_length=256)
    label_columns: list[str] = Field(
        default_factory=list, max_length=1000,
        description="classification: one 0/1 column per label (multi-label data), named after the label.",
    )


class DatasetValidation(KubeModel):
    """How thoroughly validation looks at the data."""

    tokenizer: str | None = Field(
        default=None, max_length=1024,
        description="A model repo or local path whose tokenizer measures row lengths in tokens.",
    )
    max_seq_length: int = Field(default=2048, ge=16, le=1048576,
                                description="Rows longer than this many tokens are counted as too long.")
    max_errors: int = Field(default=20, ge=1, le=100, description="Errors listed in status (all are counted).")


class DatasetSpec(KubeModel):
    """Where the data lives and how it is shaped."""

    source: DataSource = Field(description="Where the data lives.")
    format: DatasetFormat = Field(default=DatasetFormat.AUTO, description="Row format; auto detects it.")
    columns: ColumnMapping = Field(default_factory=ColumnMapping, description="Column names, if not the usual.")
    labels: list[str] = Field(
        default_factory=list, max_length=10000,
        description="classification: the allowed labels; taken from the data when empty.",
    )
    token_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret holding a Hugging Face token, for private or gated data.",
    )
    validation: DatasetValidation = Field(default_factory=DatasetValidation,
                                          description="Validation settings.")


class RowError(KubeModel):
    """One defect in the data."""

    row: int = Field(ge=0, description="1-based row number (0: the file as a whole).")
    field: str = Field(default="", description="Field (column or path) at fault.", max_length=256)
    message: str = Field(description="What is wrong and what to do.", max_length=1024)


class TokenStats(KubeModel):
    """Row lengths in tokens, measured with the validation tokenizer."""

    min: int = Field(ge=0, description="Shortest row.")
    median: int = Field(ge=0, description="Median row.")
    p95: int = Field(ge=0, description="95th percentile.")
    max: int = Field(ge=0, description="Longest row.")
    over_max_percent: float = Field(ge=0, le=100, description="% of rows longer than maxSeqLength.")


class ValidationSummary(KubeModel):
    """What validation found; shared by Dataset.status and the validator's report."""

    rows: int | None = Field(default=None, ge=0, description="Rows read.")
    valid_rows: int | None = Field(default=None, ge=0, description="Rows without defects.")
    size_bytes: int | None = Field(default=None, ge=0, description="Size of the data read, in bytes.")
    detected_format: DatasetFormat | None = Field(default=None, description="Format found (or confirmed).")
    revision: str | None = Field(default=None, max_length=200,
                                 description="Resolved commit sha (Hub) or content hash of the data.")
    errors: list[RowError] = Field(default_factory=list, max_length=100, description="First defects found.")
    error_count: int | None = Field(default=None, ge=0, description="All defects found.")
    preview: list[str] = Field(default_factory=list, max_length=10, description="A few rows, truncated.")
    labels: list[str] = Field(default_factory=list, max_length=10000,
                              description="classification: labels found in the data.")
    token_stats: TokenStats | None = Field(default=None, description="Row lengths in tokens.")


class DatasetStatus(ValidationSummary):
    """What the operator knows about the Dataset."""

    phase: DatasetPhase | None = Field(default=None, description="Pending, Validating, Ready, Invalid, Failed.")
    source: str | None = Field(default=None, max_length=4096, description="Where the data lives, in short.")
    reason: str | None = Field(default=None, max_length=1024, description="Why it is Invalid or Failed.")
    message: str | None = Field(default=None, max_length=32768, description="What happened, for humans.")
    job_name: str | None = Field(default=None, max_length=253, description="The validation Job.")
    validated_at: datetime | None = Field(default=None, description="When validation finished.")
    observed_generation: int | None = Field(default=None, ge=0,
                                            description="metadata.generation the status describes.")
    conditions: list[Condition] = Field(default_factory=list, max_length=32, description="Current states.")


class Dataset(KubeModel):
    """Training data that kubetune validates before any GPU is spent."""

    api_version: Literal["kubetune.io/v1alpha1"] = Field(default=API_VERSION, description="kubetune.io/v1alpha1")
    kind: Literal["Dataset"] = Field(default="Dataset", description="Dataset")
    metadata: ObjectMeta = Field(description="Standard object metadata.")
    spec: DatasetSpec = Field(description="Where the data lives and how it is shaped.")
    status: DatasetStatus | None = Field(default=None, description="What validation found.")
