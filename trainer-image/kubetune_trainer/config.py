"""Reading the config the operator rendered (TrainerConfig or ValidatorConfig), across contract versions.

The models are strict (the operator and kubectl must refuse unknown fields), but a trainer
image may be older than the operator that wrote its config. So the trainer reads through
this one loader: a config of the trainer's contract major version is accepted, fields this
trainer does not know are dropped at any depth with one log line naming them; a config of
another major version, or without a readable contractVersion, is refused with both
versions named, before anything else happens.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from kubetune.api.contract import CONTRACT_VERSION, FailureReason, contract_major
from kubetune.api.errors import explain_validation_error, format_loc
from kubetune_trainer.errors import TrainerFailure

ConfigT = TypeVar("ConfigT", bound=BaseModel)

_MATCHING_IMAGE = ("use a trainer image that matches the operator's version (TuningJob spec.trainerImage, "
                   "or the operator's default trainer image)")
# Every pass removes all unknown fields pydantic reports; more than a few passes means a loop.
_MAX_PASSES = 5


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


def drop_unknown_fields(data: dict[str, Any], model: type[BaseModel]) -> tuple[dict[str, Any], list[str]]:
    """A copy of `data` without the fields `model` does not know (at any depth), and their paths."""
    kept = copy.deepcopy(data)
    ignored: list[str] = []
    for _ in range(_MAX_PASSES):
        try:
            model.model_validate(kept)
            break
        except ValidationError as error:
            unknown = [tuple(e["loc"]) for e in error.errors() if e["type"] == "extra_forbidden"]
            removed = [loc for loc in unknown if _remove(kept, loc)]
            if not removed:
                break  # other errors only: the caller reports them
            ignored += [format_loc(loc) for loc in removed]
    return kept, list(dict.fromkeys(ignored))


def _remove(data: Any, loc: Sequence[int | str]) -> bool:
    """Delete the field at `loc`; parts that are not in the data (a union member's tag) are skipped."""
    node = data
    for part in loc[:-1]:
        node = _child(node, part, default=node)
    if isinstance(node, dict) and loc and loc[-1] in node:
        del node[loc[-1]]
        return True
    return False


def _child(node: Any, part: int | str, default: Any) -> Any:
    if isinstance(node, dict):
        return node.get(part, default)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return default


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
