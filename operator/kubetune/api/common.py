"""Building blocks shared by both resources: the base model, conditions, secret refs."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Final

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "kubetune.io"
VERSION = "v1alpha1"
API_VERSION: Final = "kubetune.io/v1alpha1"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
HUB_REPO = r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$"
# A Kubernetes quantity of bytes: 512, 500M, 64Ki, 1.5Gi.
BYTE_QUANTITY = r"^[0-9]+(\.[0-9]+)?(k|Ki|[MGTPE]i?)?$"
_QUANTITY_UNITS: Final = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
                          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def quantity_bytes(quantity: str) -> int:
    """A byte quantity matching BYTE_QUANTITY (e.g. "20Gi") as a number of bytes."""
    number = quantity.rstrip("kKMGTPEi")
    return int(float(number) * _QUANTITY_UNITS[quantity[len(number):]])


class KubeModel(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields refused."""

    model_config: ClassVar[ConfigDict] = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=False,
        validate_default=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as it appears in YAML/JSON: camelCase keys, unset optionals left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(KubeModel):
    """A state the resource is in (not a transition), as in metav1.Condition."""

    type: str = Field(description="Kind of state, e.g. Ready, Running, Succeeded.", max_length=316)
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        default="",
        description="One CamelCase word a program can switch on, e.g. OOMKilled.",
        max_length=1024,
    )
    message: str = Field(default="", description="What happened, for humans.", max_length=32768)
    last_transition_time: datetime | None = Field(
        default=None, description="When the status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation this condition was computed from."
    )


class SecretKeyRef(KubeModel):
    """A key of a Secret in the resource's namespace. The operator never reads it: the kubelet
    hands it to the container as an environment variable."""

    name: str = Field(description="Name of the Secret.", min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    key: str = Field(default="token", description="Key in the Secret's data.", min_length=1, max_length=253)


class ObjectMeta(KubeModel):
    """The part of metadata kubetune reads. Everything else is kept by Kubernetes, not here."""

    model_config: ClassVar[ConfigDict] = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore"
    )

    name: str = Field(description="Name of the object.", min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    namespace: str = Field(default="default", description="Namespace of the object.", max_length=63)
    uid: str | None = Field(default=None, description="Set by the API server.")
    generation: int | None = Field(default=None, description="Set by the API server.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations.")
