"""Reading one row's fields: required keys, text values, JSON-in-text lists, the system column,
and chat turns in OpenAI's {role, content} shape, checked for order. Shared by every row format
(formats.py) and the preference formats (preference.py), so a defect reads alike in all of them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kubetune.api.dataset import ColumnMapping
from kubetune_trainer.data.rows import Message, Role, RowDefect

_TOOL_ROLES = {"tool", "function", "function_call", "observation", "ipython"}
# OpenAI's roles, with its newer name for the system turn.
OPENAI_ROLES: dict[str, Role] = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def column_name(columns: ColumnMapping, name: str) -> str:
    """The data's name for a field: the mapping's when given, else the format's usual name."""
    mapped = getattr(columns, name)
    return str(mapped) if mapped else name


def maybe_json(value: Any) -> Any:
    """CSV and some Parquet files carry lists as JSON text; read them as lists."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def require(record: Mapping[str, Any], key: str, path: str | None = None) -> Any:
    if key not in record or record[key] is None:
        raise RowDefect(path or key, f"missing field {key!r} (keys: {', '.join(map(str, record)) or 'none'})")
    return record[key]


def text_field(value: Any, path: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise RowDefect(path, f"must be a string, got {kind_of(value)}")
    if not allow_empty and not value.strip():
        raise RowDefect(path, "is empty: remove the row or fill it in")
    return value


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def optional_text(record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    if value is None:
        return ""
    return text_field(value, key, allow_empty=True)


def system_turn(record: Mapping[str, Any], columns: ColumnMapping) -> list[Message]:
    system = optional_text(record, column_name(columns, "system"))
    return [Message("system", system)] if system.strip() else []


# --- chat turns ------------------------------------------------------------------------------

def check_turn_order(messages: list[Message], paths: list[str], turns_path: str) -> None:
    """Optional system first, then user/assistant alternating, starting with user."""
    if not messages:
        raise RowDefect(turns_path, "has no turns")
    previous: Role | None = None
    for index, (message, path) in enumerate(zip(messages, paths, strict=True)):
        if message.role == "system":
            if index != 0:
                raise RowDefect(path, "a system turn may only come first: move it to the start or drop it")
        elif previous in (None, "system") and message.role != "user":
            raise RowDefect(path, f"the conversation must start with a user turn, not {message.role}")
        elif message.role == previous:
            raise RowDefect(path, f"two {message.role} turns in a row: merge them into one turn "
                                  "(roles must alternate user/assistant)")
        previous = message.role


def turn_path(path: str) -> str:
    """messages[2].content -> messages[2]: a defect about a whole turn names the turn, not its text."""
    end = path.rfind("]")
    return path[: end + 1] if end >= 0 else path


def refuse_tools(role: str, path: str) -> None:
    if role in _TOOL_ROLES:
        raise RowDefect(path, f"role {role!r} (tool or function calling) is not supported: "
                              "keep only system, user and assistant turns")


def message_content(value: Any, path: str) -> str:
    """OpenAI content: a string, or a list of {type: "text", text} parts joined together."""
    if isinstance(value, list):
        parts = []
        for index, part in enumerate(value):
            part_path = f"{path}[{index}]"
            if not isinstance(part, Mapping) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, Mapping) else kind_of(part)
                raise RowDefect(part_path, f"only text parts are supported, got {kind!r}")
            parts.append(text_field(part.get("text"), f"{part_path}.text", allow_empty=True))
        value = "".join(parts)
    return text_field(value, path)


def openai_turns(value: list[Any], key: str) -> tuple[list[Message], list[str]]:
    """OpenAI-style {role, content} turns (content may be text parts) and the path of each; tool
    turns and tool calls are refused."""
    if not value:
        raise RowDefect(key, "has no turns")
    messages, paths = [], []
    for index, turn in enumerate(value):
        path = f"{key}[{index}]"
        if not isinstance(turn, Mapping):
            raise RowDefect(path, f"must be an object with role and content, got {kind_of(turn)}")
        role = text_field(require(turn, "role", f"{path}.role"), f"{path}.role")
        refuse_tools(role, f"{path}.role")
        if turn.get("tool_calls") or turn.get("function_call"):
            raise RowDefect(f"{path}.tool_calls", "tool calls are not supported: drop the turn or the row")
        if role not in OPENAI_ROLES:
            raise RowDefect(f"{path}.role", f"unknown role {role!r}: use system, user or assistant")
        messages.append(Message(OPENAI_ROLES[role], message_content(require(turn, "content", f"{path}.content"),
                                                                    f"{path}.content")))
        paths.append(f"{path}.content")
    return messages, paths
