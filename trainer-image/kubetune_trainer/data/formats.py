"""Row formats: the one place that knows how alpaca, chat, Yandex, text and label rows look.

Every chat-like format becomes a ChatExample: an optional system turn, then user and
assistant turns that strictly alternate, ending with an assistant turn. Strict alternation
is required (two user turns in a row are a defect) because the validator runs before the
base model's chat template is known, and many templates (Llama 2, Mistral, Gemma) raise
on anything else at training time, after GPU time is spent. Merging such turns is the
user's call, so the defect says to do it.

Pure Python, no torch: the validator and the trainer both import it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from kubetune.api.dataset import ColumnMapping, DatasetFormat

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class ChatExample:
    messages: tuple[Message, ...]  # ends with an assistant turn


@dataclass(frozen=True)
class TextExample:
    text: str  # plain language-model text


@dataclass(frozen=True)
class ClassificationExample:
    text: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class PreferenceExample:
    """A prompt (optional system, then user/assistant turns ending with a user turn) and two answers."""

    prompt: tuple[Message, ...]
    chosen: str
    rejected: str


Example = ChatExample | TextExample | ClassificationExample | PreferenceExample


class RowDefect(Exception):
    """What is wrong with one row (or, with row 0, with the data as a whole) and what to do."""

    def __init__(self, field: str, message: str, row: int | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message
        self.row = row


_ROLE_NAMES: dict[str, Role] = {"system": "system", "user": "user", "assistant": "assistant"}
# OpenAI's newer name for the system turn.
_CHAT_ROLE_NAMES: dict[str, Role] = {**_ROLE_NAMES, "developer": "system"}
_SHAREGPT_ROLES: dict[str, Role] = {
    "system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
}
_TOOL_ROLES = {"tool", "function", "function_call", "observation", "ipython"}


# --- column names ---------------------------------------------------------------------------

def _col(columns: ColumnMapping, name: str) -> str:
    """The data's name for a field: the mapping's when given, else the format's usual name."""
    mapped = getattr(columns, name)
    return str(mapped) if mapped else name


def _turns_column(columns: ColumnMapping, fmt: DatasetFormat, record: Mapping[str, Any]) -> str:
    if columns.messages:
        return columns.messages
    usual, other = ("messages", "conversations") if fmt is DatasetFormat.MESSAGES else ("conversations", "messages")
    # Both names occur with both turn shapes; the format's usual name wins when both are there.
    return other if usual not in record and other in record else usual


# --- detection ------------------------------------------------------------------------------

def _first_turn(value: Any) -> Mapping[str, Any] | None:
    value = _maybe_json(value)
    if isinstance(value, list) and value and isinstance(value[0], Mapping):
        return value[0]
    return None


def _fits(record: Mapping[str, Any], columns: ColumnMapping) -> DatasetFormat | None:
    """The format one row looks like, by its keys; None when nothing fits."""
    keys = set(record)
    # Before prompt+completion: trl's standard preference rows carry a prompt too.
    if {_col(columns, "chosen"), _col(columns, "rejected")} <= keys or \
            {"preferred_output", "non_preferred_output"} <= keys:
        return DatasetFormat.PREFERENCE
    turns_key = columns.messages
    for key in ([turns_key] if turns_key else ["messages", "conversations"]):
        if key in keys:
            turn = _first_turn(record[key])
            if turn is not None and ("from" in turn or "value" in turn):
                return DatasetFormat.SHAREGPT
            if key == "conversations" and turn is None:
                return DatasetFormat.SHAREGPT
            return DatasetFormat.MESSAGES
    if {_col(columns, "request"), _col(columns, "response")} <= keys:
        return DatasetFormat.YANDEX
    if {_col(columns, "instruction"), _col(columns, "output")} <= keys:
        return DatasetFormat.ALPACA
    if {_col(columns, "prompt"), _col(columns, "completion")} <= keys:
        return DatasetFormat.PROMPT_COMPLETION
    if _col(columns, "text") in keys:
        if _col(columns, "label") in keys or ("labels" in keys and not columns.label):
            return DatasetFormat.CLASSIFICATION
        if columns.label_columns and set(columns.label_columns) <= keys:
            return DatasetFormat.CLASSIFICATION
        return DatasetFormat.TEXT
    return None


_DETECTION_ORDER = [f for f in DatasetFormat if f is not DatasetFormat.AUTO]


def detect_format(records: Sequence[Mapping[str, Any]], columns: ColumnMapping) -> DatasetFormat:
    """The format most of the first rows fit (ties go to the more specific format)."""
    votes: dict[DatasetFormat, int] = {}
    seen: dict[str, None] = {}
    for record in records:
        if not isinstance(record, Mapping):
            continue
        seen.update(dict.fromkeys(str(k) for k in record))
        fmt = _fits(record, columns)
        if fmt is not None:
            votes[fmt] = votes.get(fmt, 0) + 1
    if not votes:
        keys = ", ".join(list(seen)[:20]) or "none (no JSON objects among the first rows)"
        raise RowDefect(
            "",
            f"cannot tell the format from the keys seen ({keys}); expected e.g. instruction+output "
            "(alpaca), messages, conversations (sharegpt), request+response (yandex), prompt+completion, "
            "text, text+label, or chosen+rejected (preference): set spec.format and map your column names in "
            "spec.columns",
            row=0,
        )
    return max(_DETECTION_ORDER, key=lambda f: (votes.get(f, 0), -_DETECTION_ORDER.index(f)))


# --- field access ---------------------------------------------------------------------------

def _maybe_json(value: Any) -> Any:
    """CSV and some Parquet files carry lists as JSON text; read them as lists."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _require(record: Mapping[str, Any], key: str, path: str | None = None) -> Any:
    if key not in record or record[key] is None:
        raise RowDefect(path or key, f"missing field {key!r} (keys: {', '.join(map(str, record)) or 'none'})")
    return record[key]


def _text(value: Any, path: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise RowDefect(path, f"must be a string, got {_kind(value)}")
    if not allow_empty and not value.strip():
        raise RowDefect(path, "is empty: remove the row or fill it in")
    return value


def _kind(value: Any) -> str:
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


def _optional_text(record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    if value is None:
        return ""
    return _text(value, key, allow_empty=True)


def _system_turn(record: Mapping[str, Any], columns: ColumnMapping) -> list[Message]:
    system = _optional_text(record, _col(columns, "system"))
    return [Message("system", system)] if system.strip() else []


# --- chat checks ----------------------------------------------------------------------------

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


def _check_chat(messages: list[Message], paths: list[str], turns_path: str) -> ChatExample:
    """Turns in order (check_turn_order), ending with the assistant's answer."""
    check_turn_order(messages, paths, turns_path)
    if not any(m.role == "assistant" for m in messages):
        raise RowDefect(turns_path, "has no assistant turn: add the assistant's answer as the last turn "
                                    "(there is nothing to learn otherwise)")
    if messages[-1].role != "assistant":
        raise RowDefect(turn_path(paths[-1]), f"the conversation ends with a {messages[-1].role} turn: end it with "
                                              "the assistant's answer, or drop the last turn")
    return ChatExample(tuple(messages))


def _turn_list(record: Mapping[str, Any], key: str) -> list[Any]:
    value = _maybe_json(_require(record, key))
    if not isinstance(value, list):
        raise RowDefect(key, f"must be a list of turns, got {_kind(value)}")
    if not value:
        raise RowDefect(key, "has no turns")
    return value


def _refuse_tools(role: str, path: str) -> None:
    if role in _TOOL_ROLES:
        raise RowDefect(path, f"role {role!r} (tool or function calling) is not supported: "
                              "keep only system, user and assistant turns")


def _message_content(value: Any, path: str) -> str:
    """OpenAI content: a string, or a list of {type: "text", text} parts joined together."""
    if isinstance(value, list):
        parts = []
        for index, part in enumerate(value):
            part_path = f"{path}[{index}]"
            if not isinstance(part, Mapping) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, Mapping) else _kind(part)
                raise RowDefect(part_path, f"only text parts are supported, got {kind!r}")
            parts.append(_text(part.get("text"), f"{part_path}.text", allow_empty=True))
        value = "".join(parts)
    return _text(value, path)


def _parse_messages(record: Mapping[str, Any], columns: ColumnMapping) -> ChatExample:
    key = _turns_column(columns, DatasetFormat.MESSAGES, record)
    messages = _system_turn(record, columns)
    paths = [_col(columns, "system")] * len(messages)
    for index, turn in enumerate(_turn_list(record, key)):
        path = f"{key}[{index}]"
        if not isinstance(turn, Mapping):
            raise RowDefect(path, f"must be an object with role and content, got {_kind(turn)}")
        role = _text(_require(turn, "role", f"{path}.role"), f"{path}.role")
        _refuse_tools(role, f"{path}.role")
        if turn.get("tool_calls") or turn.get("function_call"):
            raise RowDefect(f"{path}.tool_calls", "tool calls are not supported: drop the turn or the row")
        if role not in _CHAT_ROLE_NAMES:
            raise RowDefect(f"{path}.role", f"unknown role {role!r}: use system, user or assistant")
        content = _message_content(_require(turn, "content", f"{path}.content"), f"{path}.content")
        messages.append(Message(_CHAT_ROLE_NAMES[role], content))
        paths.append(f"{path}.content")
    return _check_chat(messages, paths, key)


def _parse_sharegpt(record: Mapping[str, Any], columns: ColumnMapping) -> ChatExample:
    key = _turns_column(columns, DatasetFormat.SHAREGPT, record)
    messages = _system_turn(record, columns)
    paths = [_col(columns, "system")] * len(messages)
    for index, turn in enumerate(_turn_list(record, key)):
        path = f"{key}[{index}]"
        if not isinstance(turn, Mapping):
            raise RowDefect(path, f"must be an object with from and value, got {_kind(turn)}")
        who_key, text_key = ("from", "value") if "from" in turn or "role" not in turn else ("role", "content")
        who = _text(_require(turn, who_key, f"{path}.{who_key}"), f"{path}.{who_key}")
        _refuse_tools(who, f"{path}.{who_key}")
        if who not in _SHAREGPT_ROLES:
            raise RowDefect(f"{path}.{who_key}", f"unknown speaker {who!r}: use human, gpt or system")
        value = _text(_require(turn, text_key, f"{path}.{text_key}"), f"{path}.{text_key}")
        messages.append(Message(_SHAREGPT_ROLES[who], value))
        paths.append(f"{path}.{text_key}")
    return _check_chat(messages, paths, key)


def _yandex_turn(turn: Any, path: str) -> Message:
    if not isinstance(turn, Mapping):
        raise RowDefect(path, f"must be an object with role and text, got {_kind(turn)}")
    role = _text(_require(turn, "role", f"{path}.role"), f"{path}.role")
    if role not in _ROLE_NAMES:
        raise RowDefect(f"{path}.role", f"unknown role {role!r}: use system, user or assistant")
    return Message(_ROLE_NAMES[role], _text(_require(turn, "text", f"{path}.text"), f"{path}.text"))


def _parse_yandex(record: Mapping[str, Any], columns: ColumnMapping) -> ChatExample:
    request_key, response_key = _col(columns, "request"), _col(columns, "response")
    request = _maybe_json(_require(record, request_key))
    messages = _system_turn(record, columns)
    paths = [_col(columns, "system")] * len(messages)
    if isinstance(request, str):
        messages.append(Message("user", _text(request, request_key)))
        paths.append(request_key)
    elif isinstance(request, list) and request:
        for index, turn in enumerate(request):
            messages.append(_yandex_turn(turn, f"{request_key}[{index}]"))
            paths.append(f"{request_key}[{index}].text")
    elif isinstance(request, list):
        raise RowDefect(request_key, "has no turns")
    else:
        raise RowDefect(request_key, f"must be a list of {{role, text}} turns, got {_kind(request)}")
    response = _maybe_json(_require(record, response_key))
    response_path = response_key
    if isinstance(response, list):
        if len(response) != 1:
            raise RowDefect(response_key, f"must hold exactly one answer, got {len(response)}")
        response, response_path = response[0], f"{response_key}[0]"
    if isinstance(response, Mapping):
        answer = _yandex_turn(response, response_path)
        if answer.role != "assistant":
            raise RowDefect(f"{response_path}.role", f"the response must be the assistant's, not {answer.role}")
        response_path += ".text"
    else:
        answer = Message("assistant", _text(response, response_path))
    if messages and messages[-1].role == "assistant":
        raise RowDefect(paths[-1], "the request must end with a user turn; the answer goes in the response")
    return _check_chat([*messages, answer], [*paths, response_path], request_key)


def _parse_alpaca(record: Mapping[str, Any], columns: ColumnMapping) -> ChatExample:
    instruction_key, input_key, output_key = (_col(columns, n) for n in ("instruction", "input", "output"))
    instruction = _text(_require(record, instruction_key), instruction_key)
    context = _optional_text(record, input_key)
    output = _text(_require(record, output_key), output_key)
    prompt = f"{instruction}\n\n{context}" if context.strip() else instruction
    return ChatExample((*_system_turn(record, columns), Message("user", prompt), Message("assistant", output)))


def _parse_prompt_completion(record: Mapping[str, Any], columns: ColumnMapping) -> ChatExample:
    prompt_key, completion_key = _col(columns, "prompt"), _col(columns, "completion")
    prompt = _text(_require(record, prompt_key), prompt_key)
    completion = _text(_require(record, completion_key), completion_key)
    return ChatExample((*_system_turn(record, columns), Message("user", prompt),
                        Message("assistant", completion)))


def _parse_text(record: Mapping[str, Any], columns: ColumnMapping) -> TextExample:
    key = _col(columns, "text")
    return TextExample(_text(_require(record, key), key))


# --- classification -------------------------------------------------------------------------

_TRUE_FLAGS = (1, True, "1", "true", "True", 1.0)
_FALSE_FLAGS = (0, False, "0", "false", "False", 0.0, "")


def _label_value(value: Any, path: str, allowed: Sequence[str]) -> str:
    # Integer class ids (as in many Hub datasets) are read as their decimal string.
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise RowDefect(path, f"a label must be a non-empty string, got {_kind(value) if value != '' else 'empty'}")
    if allowed and value not in allowed:
        shown = ", ".join(list(allowed)[:20]) + (", ..." if len(allowed) > 20 else "")
        raise RowDefect(path, f"unknown label {value!r}: allowed are {shown} (fix the row or add it to spec.labels)")
    return value


def _parse_classification(record: Mapping[str, Any], columns: ColumnMapping, allowed: Sequence[str],
                          label_columns: Sequence[str]) -> ClassificationExample:
    text_key = _col(columns, "text")
    text = _text(_require(record, text_key), text_key)
    if label_columns:
        labels = []
        for name in label_columns:
            flag = _require(record, name)
            if flag in _TRUE_FLAGS:
                labels.append(name)
            elif flag not in _FALSE_FLAGS:
                raise RowDefect(name, f"a label column must be 0 or 1, got {flag!r}")
        return ClassificationExample(text, tuple(labels))
    label_key = _col(columns, "label")
    if label_key not in record and not columns.label and "labels" in record:
        label_key = "labels"
    value = _require(record, label_key)
    if isinstance(value, str) and value.startswith("["):
        value = _maybe_json(value)
    if isinstance(value, list | tuple):
        found = [_label_value(item, f"{label_key}[{i}]", allowed) for i, item in enumerate(value)]
        if len(set(found)) != len(found):
            raise RowDefect(label_key, "lists a label twice")
        return ClassificationExample(text, tuple(found))
    return ClassificationExample(text, (_label_value(value, label_key, allowed),))


# --- entry points ---------------------------------------------------------------------------

_CHAT_PARSERS: dict[DatasetFormat, Callable[[Mapping[str, Any], ColumnMapping], Example]] = {
    DatasetFormat.ALPACA: _parse_alpaca,
    DatasetFormat.MESSAGES: _parse_messages,
    DatasetFormat.SHAREGPT: _parse_sharegpt,
    DatasetFormat.YANDEX: _parse_yandex,
    DatasetFormat.PROMPT_COMPLETION: _parse_prompt_completion,
    DatasetFormat.TEXT: _parse_text,
}


def parse_record(record: Mapping[str, Any], fmt: DatasetFormat, columns: ColumnMapping,
                 labels: Sequence[str] = ()) -> Example:
    """One row as an Example; raises RowDefect naming the field at fault.

    `labels` are the allowed labels (classification; any label when empty).
    """
    if not isinstance(record, Mapping):
        raise RowDefect("", f"a row must be a JSON object, got {_kind(record)}")
    if fmt is DatasetFormat.AUTO:
        raise ValueError("parse_record needs a concrete format: call detect_format first")
    if fmt is DatasetFormat.CLASSIFICATION:
        return _parse_classification(record, columns, labels, columns.label_columns)
    if fmt is DatasetFormat.PREFERENCE:
        from kubetune_trainer.data.preference import parse_preference  # it builds on this module's helpers

        return parse_preference(record, columns)
    return _CHAT_PARSERS[fmt](record, columns)


_SPACES = re.compile(r"\s+")


def render_text(example: Example) -> str:
    """The example as plain text (role-prefixed turns): for previews and tokenizers without a template."""
    if isinstance(example, ChatExample):
        return "\n".join(f"{m.role}: {m.content}" for m in example.messages)
    if isinstance(example, PreferenceExample):
        prompt = "\n".join(f"{m.role}: {m.content}" for m in example.prompt)
        return f"{prompt}\nchosen: {example.chosen}\nrejected: {example.rejected}"
    return example.text


def preview_line(example: Example, limit: int = 120) -> str:
    """One line, at most `limit` characters, for status.preview."""
    if isinstance(example, ChatExample):
        line = " | ".join(f"{m.role}: {_SPACES.sub(' ', m.content).strip()}" for m in example.messages)
    elif isinstance(example, ClassificationExample):
        line = f"[{', '.join(example.labels)}] {_SPACES.sub(' ', example.text).strip()}"
    elif isinstance(example, PreferenceExample):
        parts = [*(f"{m.role}: {m.content}" for m in example.prompt), f"chosen: {example.chosen}",
                 f"rejected: {example.rejected}"]
        line = " | ".join(_SPACES.sub(" ", p).strip() for p in parts)
    else:
        line = _SPACES.sub(" ", example.text).strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"
