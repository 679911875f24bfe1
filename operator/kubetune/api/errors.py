"""Turn pydantic validation errors into lines a user can act on.

Each line names the camelCase field path, what is wrong, and what to do. The operator puts
them in status (InvalidSpec) and the local mode prints them before anything runs.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError


def explain_validation_error(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """One line per error: the camelCase field path, what is wrong, and the fix."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = format_loc(loc)
        lines.append(f"{path or '(document)'}: {_explain(err, loc, root)}")
    return lines


def format_loc(loc: Sequence[int | str]) -> str:
    """('spec', 'datasets', 'train', 0, 'source') -> 'spec.datasets.train[0].source'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


_NUMBER_TYPES = {"float_parsing", "float_type", "int_parsing", "int_type", "int_from_float", "decimal_parsing"}


def _explain(err: Any, loc: tuple[int | str, ...], root: type[BaseModel]) -> str:
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        known = _known_fields(root, loc[:-1])
        hint = did_you_mean(str(loc[-1]), known)
        listed = f" (known: {', '.join(known)})" if known and not hint else ""
        return f"unknown field{hint}{listed}: remove it or fix its spelling"
    if kind == "missing":
        return "required field is missing: add it"
    if kind in _NUMBER_TYPES:
        whole = kind.startswith("int")
        expected = "a whole number" if whole else "a number"
        if _is_quoted_number(value):
            return f"expected {expected}, got the string {_show(value)}: remove the quotes (a cluster refuses it)"
        example = "e.g. 3" if whole else "e.g. 0.0002 or 2e-4"
        return f"expected {expected}, got {_show(value)}: write a number ({example})"
    if kind in ("bool_parsing", "bool_type"):
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return f"expected true or false, got the string {_show(value)}: remove the quotes (a cluster refuses it)"
        return f"expected true or false, got {_show(value)}"
    if kind == "string_type":
        if isinstance(value, bool | int | float):
            written = str(value).lower() if isinstance(value, bool) else str(value)
            return f"expected a string, got {written}: quote it ('{written}')"
        return f"expected a string, got {_show(value)}"
    if kind in ("enum", "literal_error"):
        return f"got {_show(value)}: use one of {ctx.get('expected', '')}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{err['msg'].removeprefix('Input should be ')[:200]} (got {_show(value)}): change the value"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "string_pattern_mismatch":
        return f"{_show(value)} does not match the pattern {ctx.get('pattern')}: fix the value"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping of fields, got {_show(value)}"
    if kind == "list_type":
        return f"expected a list, got {_show(value)}: write it as a YAML list (- item)"
    return f"{err['msg']} (got {_show(value)})"


def _is_quoted_number(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def did_you_mean(word: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _known_fields(root: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The camelCase field names of the model at `loc`, for 'unknown field' hints."""
    model: type[BaseModel] | None = root
    for part in loc:
        if model is None:
            return []
        if isinstance(part, int):
            continue  # a list index: the element's model is already selected
        model = next((_model_in(f.annotation) for name, f in model.model_fields.items()
                      if (f.alias or name) == part), None)
    if model is None:
        return []
    return sorted(f.alias or name for name, f in model.model_fields.items())


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside X, X | None, list[X] or dict[str, X]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, dict):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
