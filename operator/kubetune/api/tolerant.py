"""Reading a contract document written by a newer peer (a trainer image newer than the operator, or
the reverse): the contract models are strict, so kubectl and the operator refuse unknown fields,
but within one contract major version a reader drops the fields it does not know. One place,
used by the trainer for its config and by the operator for the trainer's result and report."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from kubetune.api.errors import format_loc

# Every pass removes all unknown fields pydantic reports; more than a few passes means a loop.
_MAX_PASSES = 5


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
