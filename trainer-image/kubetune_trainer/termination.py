"""The run's last word (TrainerResult, ValidationReport): redacted, fitted into 4096 bytes, written.

The kubelet keeps at most TERMINATION_MESSAGE_LIMIT bytes of the termination message and a
cut JSON does not parse, so every contract model goes through the same fitting before it is
written: secrets are redacted from every text, then parts are given up, least informative
first, until the compact JSON fits:

  1. prose inside lists (row error messages, previews) is shortened, step by step;
  2. lists are halved, the biggest first, down to their first item;
  3. the remaining prose (the summary message) is shortened by quarters, down to 80 characters;
  4. lists are emptied, then optional fields dropped: single values, the biggest first,
     before whole objects.

Identifiers (labels, field paths, repo, revision, path) are never shortened, only dropped:
a cut identifier would be wrong. The fitted message still validates against its model,
which is how the operator reads it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from kubetune.api.common import KubeModel
from kubetune.api.contract import (
    TERMINATION_LOG,
    TERMINATION_MESSAGE_LIMIT,
    ExitCode,
    FailureReason,
    TrainerResult,
)
from kubetune.api.redact import redact

MessageT = TypeVar("MessageT", bound=KubeModel)
Wire = dict[str, Any]

# Human text that may be shortened: what these keys hold, and the items of these lists.
_PROSE_KEYS = frozenset({"message"})
_PROSE_LISTS = frozenset({"preview"})
_LIST_PROSE_CAPS = (300, 160, 100, 60)
_PROSE_FLOOR = 80


def termination_json(message: KubeModel) -> str:
    """Compact JSON, keys sorted, UTF-8 as is (an escaped non-ASCII character costs 6 bytes, not 2)."""
    return _dumps(message.to_wire())


def redact_message(message: MessageT, secrets: Iterable[str | None]) -> MessageT:
    """`message` with every secret redacted from every text in it."""
    return type(message).model_validate(_redacted(message.to_wire(), list(secrets)))


def fit_termination_message(message: MessageT, secrets: Iterable[str | None] = (),
                            limit: int = TERMINATION_MESSAGE_LIMIT) -> MessageT:
    """`message` with secrets redacted and its JSON shrunk to at most `limit` bytes."""
    model = type(message)
    wire = _redacted(message.to_wire(), list(secrets))

    def fits() -> bool:
        return _size(wire) <= limit

    for step in (_shorten_prose_in_lists, _halve_lists, _shorten_prose):
        if fits():
            break
        step(wire, fits)
    if not fits():
        _drop_parts(wire, fits, lambda candidate: _valid(model, candidate))
    if not fits():
        raise AssertionError(f"a {model.__name__} cannot be shrunk below {limit} bytes")
    return model.model_validate(wire)


def write_termination_message(text: str, path: str) -> None:
    # Outside a Pod the default path does not exist; creating files under /dev is not ours to do.
    if path == TERMINATION_LOG and not os.path.exists(path):
        return
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text, encoding="utf-8")
    except OSError as error:
        print(f"warning: cannot write the result to {path}: {error}", file=sys.stderr, flush=True)


# --- the steps ------------------------------------------------------------------------------

Fits = Callable[[], bool]
Valid = Callable[[Wire], bool]


def _shorten_prose_in_lists(wire: Wire, fits: Fits) -> None:
    for cap in _LIST_PROSE_CAPS:
        for holder, key in _prose(wire, in_lists=True):
            holder[key] = _clip(holder[key], cap)
        if fits():
            return


def _halve_lists(wire: Wire, fits: Fits) -> None:
    while not fits():
        longer = [items for items in _lists(wire) if len(items) > 1]
        if not longer:
            return
        biggest = max(longer, key=_size)
        del biggest[max(1, len(biggest) // 2):]


def _shorten_prose(wire: Wire, fits: Fits) -> None:
    while not fits():
        long = [(holder, key) for holder, key in _prose(wire, in_lists=False) if len(holder[key]) > _PROSE_FLOOR]
        if not long:
            return
        holder, key = max(long, key=lambda place: len(place[0][place[1]]))
        holder[key] = _clip(holder[key], max(_PROSE_FLOOR, len(holder[key]) * 3 // 4))


def _drop_parts(wire: Wire, fits: Fits, valid: Valid) -> None:
    """Empty lists, then remove optional fields, as long as the model still accepts what is left."""
    for items in sorted((items for items in _lists(wire) if items), key=_size, reverse=True):
        if fits():
            return
        kept = list(items)
        items.clear()
        if not valid(wire):
            items.extend(kept)
    while not fits():
        # Single values before whole objects: a result without its URL beats one without its model.
        for holder, key in sorted(_fields(wire), key=lambda place: (isinstance(place[0][place[1]], dict | list),
                                                                     -_size(place[0][place[1]]))):
            value = holder.pop(key)
            if valid(wire):
                break
            holder[key] = value
        else:
            return


# --- walking the JSON -----------------------------------------------------------------------

def _prose(node: Any, *, in_lists: bool, inside_list: bool = False) -> Iterator[tuple[Any, Any]]:
    """(holder, key) of every prose string, inside lists or outside them."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and key in _PROSE_KEYS and inside_list == in_lists:
                yield node, key
            elif isinstance(value, list) and key in _PROSE_LISTS and in_lists:
                yield from ((value, i) for i, item in enumerate(value) if isinstance(item, str))
            else:
                yield from _prose(value, in_lists=in_lists, inside_list=inside_list)
    elif isinstance(node, list):
        for item in node:
            yield from _prose(item, in_lists=in_lists, inside_list=True)


def _lists(node: Any) -> Iterator[list[Any]]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _lists(value)
    elif isinstance(node, list):
        yield node
        for item in node:
            yield from _lists(item)


def _fields(node: Any) -> Iterator[tuple[dict[str, Any], str]]:
    if isinstance(node, dict):
        for key, value in list(node.items()):
            yield node, key
            yield from _fields(value)
    elif isinstance(node, list):
        for item in node:
            yield from _fields(item)


def _redacted(node: Any, secrets: list[str | None]) -> Any:
    if isinstance(node, str):
        return redact(node, secrets)
    if isinstance(node, dict):
        return {key: _redacted(value, secrets) for key, value in node.items()}
    if isinstance(node, list):
        return [_redacted(item, secrets) for item in node]
    return node


def _valid(model: type[KubeModel], wire: Wire) -> bool:
    try:
        model.model_validate(wire)
    except ValidationError:
        return False
    return True


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _dumps(node: Any) -> str:
    return json.dumps(node, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _size(node: Any) -> int:
    return len(_dumps(node).encode("utf-8"))


def exit_code_of(result: TrainerResult) -> int:
    """The process exit code a result stands for (the Job's podFailurePolicy switches on it)."""
    if result.status == "Succeeded":
        return ExitCode.OK
    if result.reason is FailureReason.INTERRUPTED:
        return ExitCode.INTERRUPTED
    return ExitCode.RETRYABLE if result.retryable else ExitCode.PERMANENT


def summary_line(result: TrainerResult) -> str:
    """One log line for a result: where the model went, or why the run failed."""
    if result.status == "Succeeded":
        where = result.model.repo or result.model.path if result.model else "?"
        return f"succeeded: {where}"
    return f"failed ({result.reason}): {result.message}"
