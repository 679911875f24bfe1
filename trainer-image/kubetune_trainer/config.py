"""Reading the config the operator rendered (TrainerConfig or ValidatorConfig), across contract versions.

The models are strict (the operator and kubectl must refuse unknown fields), but a trainer
image may be older than the operator that wrote its config. So the trainer reads through
this one loader: a config of the trainer's contract major version is accepted, fields this
trainer does not know are dropped at any depth with one log line naming them; a config of
another major version, or without a readable contractVersion, is refused with both
versions named, before anything else happens.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from kubetune.api.contract import CONTRACT_VERSION, FailureReason, contract_major
from kubetune.api.errors import explain_validation_error
from kubetune.api.tolerant import drop_unknown_fields
from kubetune_trainer.errors import TrainerFailure

ConfigT = TypeVar("ConfigT", bound=BaseModel)

_MATCHING_IMAGE = ("use a trainer image that matches the operator's version (TuningJob spec.trainerImage, "
                   "or the operator's default trainer image)")


def load_config(path: Path, model: type[ConfigT], log: Callable[[str], None] = print) -> ConfigT:
    """The config at `path` (JSON or YAML) as `model`; a TrainerFailure (InvalidConfig) when it cannot be."""
    data = _read(path)
    check_contract_version(data.get("contractVersion"))
    kept, ignored = drop_unknown_fields(data, model)
    if ignored:
        log(f"config: ignoring {len(ignored)} field(s) this trainer (contract {CONTRACT_VERSION}) does not know, "
            f"from a contract {data.get('contractVersion')} config: {', '.join(ignored)}")
    try:
        return model.model_validate(kept)
    except ValidationError as error:
        raise TrainerFailure(FailureReason.INVALID_CONFIG, f"the config {path} is not valid: "
                             + "; ".join(explain_validation_error(error, model))) from None


def check_contract_version(found: object) -> None:
    """Refuse a config written for another major version of the contract (or for none)."""
    ours = contract_major(CONTRACT_VERSION)
    major = contract_major(found)
    if major == ours:
        return
    if found is None:
        what = "the config names no contractVersion (operators before contract 1.0 wrote none)"
    elif major is None:
        what = f"the config's contractVersion {found!r} is not MAJOR.MINOR"
    else:
        what = f"the config was written for contract version {found}"
    raise TrainerFailure(FailureReason.INVALID_CONFIG,
                         f"{what}, and this trainer speaks contract version {CONTRACT_VERSION}: {_MATCHING_IMAGE}")


def _read(path: Path) -> dict[str, Any]:
    """JSON (as the operator renders it) or YAML (as a person writes it), as a mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise TrainerFailure(FailureReason.INVALID_CONFIG,
                             f"cannot read the config {path}: {error.strerror or error}") from None
    try:
        data = json.loads(text)
    except ValueError:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise TrainerFailure(FailureReason.INVALID_CONFIG, f"cannot read the config {path}: "
                                 f"{' '.join(str(error).split())}") from None
    if not isinstance(data, dict):
        raise TrainerFailure(FailureReason.INVALID_CONFIG,
                             f"the config {path} must be a mapping of fields, got {type(data).__name__}")
    return data
