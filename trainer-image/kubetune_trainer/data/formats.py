"""Row formats: the one place that knows how alpaca, chat, Yandex, text and label rows look.

Every chat-like format becomes a ChatExample: an optional system turn, then user and
assistant turns that strictly alternate, ending with an assistant turn. Strict alternation
is required (two user turns in a row are a defect) because the validator runs before the
base model's chat template is known, and many templates (Llama 2, Mistral, Gemma) raise
on anything else at training time, after GPU time is spent. Merging such turns is the
user's call, so the defect says to do it.

What a row becomes is in rows.py, how one field is read in rowfields.py, and the preference
shapes in preference.py. Pure Python, no torch: the validator and the trainer both import it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubetune.api.dataset import ColumnMapping, DatasetFormat
from kubetune_trainer.data.preference import parse_preference
from kubetune_trainer.data.rowfields import (
    check_turn_order,
    column_name,
    kind_of,
    maybe_json,
    openai_turns,
    optional_text,
    refuse_tools,
    require,
    system_turn,
    text_field,
    turn_path,
)
from kubetune_trainer.data.rows import (
    ChatExample,
    ClassificationExample,
    Example,
    Message,
    Role,
    RowDefect,
    TextExample,
)

_ROLE_NAMES: dict[str, Role] = {"system": "system", "user": "user", "assistant": "assistant"}
_SHAREGPT_ROLES: dict[str, Role] = {
    "system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
}


# --- column names ---------------------------------------------------------------------------

def _turns_column(columns: ColumnMapping, fmt: DatasetFormat, record: Mapping[str, Any]) -> str:
    if columns.messages:
        return columns.messages
    usual, other = ("messages", "conversations") if fmt is DatasetFormat.MESSAGES else ("conversations", "messages")
    # Both names occur with both turn shapes; the format's usual name wins when both are there.
    return other if usual not in record and other in record else usual


# --- detection ------------------------------------------------------------------------------

def _first_turn(value: Any) -> Mapping[str, Any] | None:
    value = maybe_json(value)
    if isinstance(value, list) and value and isinstance(value[0], Mapping):
        return value[0]
    return None


def _fits(record: Mapping[str, Any], columns: ColumnMapping) -> DatasetFormat | None:
    """The format one row looks like, by its keys; None when nothing fits."""
    keys = set(record)
    # Before prompt+completion: trl's standard preference rows carry a prompt too.
    if {column_name(columns, "chosen"), column_name(columns, "rejected")} <= keys or \
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
    if {column_name(columns, "request"), column_name(columns, "response")} <= keys:
        return DatasetFormat.YANDEX
    if {column_name(columns, "instruction"), column_name(columns, "output")} <= keys:
        return DatasetFormat.ALPACA
    if {column_name(columns, "prompt"), column_name(columns, "completion")} <= keys:
        return DatasetFormat.PROMPT_COMPLETION
    if column_name(columns, "text") in keys:
        if column_name(columns, "label") in keys or ("labels" in keys and not columns.label):
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


# --- chat checks ----------------------------------------------------------------------------

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
    value = maybe_json(require(record, key))
    if not isinstance(value, list):
        raise RowDefect(key, f"must be a list of turns, got {kind_of(value)}")
    if not value:
        raise RowDefect(key, "has no turns")
    return value


def _parse_messages(record: Mapping[str, Any], columns: ColumnMapping) -> ChatExample:
    key = _turns_column(columns, DatasetFormat.MESSAGES, record)
    messages = system_turn(record, columns)
    paths = [column_name(columns, "system")] * len(messages)
    turns, turn_paths = openai_turns(_turn_list(record, key), key)
    return _check_chat(messages + turns, paths + turn_paths, key)


def _parse_sharegpt(record: Mapping[str, Any], columns: ColumnMapping) -> ChatExample:
    key = _turns_column(columns, DatasetFormat.SHAREGPT, record)
    messages = system_turn(record, columns)
    paths = [column_name(columns, "system")] * len(messages)
    for index, turn in enumerate(_turn_list(record, key)):
        path = f"{key}[{index}]"
        if not isinstance(turn, Mapping):
            raise RowDefect(path, f"must be an object with from and value, got {kind_of(turn)}")
        who_key, text_key = ("from", "value") if "from" in turn or "role" not in turn else ("role", "content")
        who = text_field(require(turn, who_key, f"{path}.{who_key}"), f"{path}.{who_key}")
        refuse_tools(who, f"{path}.{who_key}")
        if who not in _SHAREGPT_ROLES:
            raise RowDefect(f"{path}.{who_key}", f"unknown speaker {who!r}: use human, gpt or system")
        value = text_field(require(turn, text_key, f"{path}.{text_key}"), f"{path}.{text_key}")
        messages.append(Message(_SHAREGPT_ROLES[who], value))
        paths.append(f"{path}.{text_key}")
    return _check_chat(messages, paths, key)


def _yandex_turn(turn: Any, path: str) -> Message:
    if not isinstance(turn, Mapping):
        raise RowDefect(path, f"must be an object with role and text, got {kind_of(turn)}")
    role = text_field(require(turn, "role", f"{path}.role"), f"{path}.role")
    if role not in _ROLE_NAMES:
        raise RowDefect(f"{path}.role", f"unknown role {role!r}: use system, user or assistant")
    return Message(_ROLE_NAMES[role], text_field(require(turn, "text", f"{path}.text"), f"{path}.text"))


def _parse_yandex(record: Mapping[str, Any], columns: ColumnMapping) -> ChatExample:
    request_key, response_key = column_name(columns, "request"), column_name(columns, "response")
    request = maybe_json(require(record, request_key))
    messages = system_turn(record, columns)
    paths = [column_name(columns, "system")] * len(messages)
    if isinstance(request, str):
        messages.append(Message("user", text_field(request, request_key)))
        paths.append(request_key)
    elif isinstance(request, list) and request:
        for index, turn in enumerate(request):
            messages.append(_yandex_turn(turn, f"{request_key}[{index}]"))
            paths.append(f"{request_key}[{index}].text")
    elif isinstance(request, list):
        raise RowDefect(request_key, "has no turns")
    else:
        raise RowDefect(request_key, f"must be a list of {{role, text}} turns, got {kind_of(request)}")
    response = maybe_json(require(record, response_key))
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
        answer = Message("assistant", text_field(response, response_path))
    if messages and messages[-1].role == "assistant":
        raise RowDefect(paths[-1], "the request must end with a user turn; the answer goes in the response")
    return _check_chat([*messages, answer], [*paths, response_path], request_key)


def _parse_alpaca(record: Mapping[str, Any], columns: ColumnMapping) -> ChatExample:
    instruction_key, input_key, output_key = (column_name(columns, n) for n in ("instruction", "input", "output"))
    instruction = text_field(require(record, instruction_key), instruction_key)
    context = optional_text(record, input_key)
    output = text_field(require(record, output_key), output_key)
    prompt = f"{instruction}\n\n{context}" if context.strip() else instruction
    return ChatExample((*system_turn(record, columns), Message("user", prompt), Message("assistant", output)))


def _parse_prompt_completion(record: Mapping[str, Any], columns: ColumnMapping) -> ChatExample:
    prompt_key, completion_key = column_name(columns, "prompt"), column_name(columns, "completion")
    prompt = text_field(require(record, prompt_key), prompt_key)
    completion = text_field(require(record, completion_key), completion_key)
    return ChatExample((*system_turn(record, columns), Message("user", prompt),
                        Message("assistant", completion)))


def _parse_text(record: Mapping[str, Any], columns: ColumnMapping) -> TextExample:
    key = column_name(columns, "text")
    return TextExample(text_field(require(record, key), key))


# --- classification -------------------------------------------------------------------------

_TRUE_FLAGS = (1, True, "1", "true", "True", 1.0)
_FALSE_FLAGS = (0, False, "0", "false", "False", 0.0, "")


def _label_value(value: Any, path: str, allowed: Sequence[str]) -> str:
    # Integer class ids (as in many Hub datasets) are read as their decimal string.
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise RowDefect(path, f"a label must be a non-empty string, got {kind_of(value) if value != '' else 'empty'}")
    if allowed and value not in allowed:
        shown = ", ".join(list(allowed)[:20]) + (", ..." if len(allowed) > 20 else "")
        raise RowDefect(path, f"unknown label {value!r}: allowed are {shown} (fix the row or add it to spec.labels)")
    return value


def _parse_classification(record: Mapping[str, Any], columns: ColumnMapping, allowed: Sequence[str],
                          label_columns: Sequence[str]) -> ClassificationExample:
    text_key = column_name(columns, "text")
    text = text_field(require(record, text_key), text_key)
    if label_columns:
        labels = []
        for name in label_columns:
            flag = require(record, name)
            if flag in _TRUE_FLAGS:
                labels.append(name)
            elif flag not in _FALSE_FLAGS:
                raise RowDefect(name, f"a label column must be 0 or 1, got {flag!r}")
        return ClassificationExample(text, tuple(labels))
    label_key = column_name(columns, "label")
    if label_key not in record and not columns.label and "labels" in record:
        label_key = "labels"
    value = require(record, label_key)
    if isinstance(value, str) and value.startswith("["):
        value = maybe_json(value)
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
        raise RowDefect("", f"a row must be a JSON object, got {kind_of(record)}")
    if fmt is DatasetFormat.AUTO:
        raise ValueError("parse_record needs a concrete format: call detect_format first")
    if fmt is DatasetFormat.CLASSIFICATION:
        return _parse_classification(record, columns, labels, columns.label_columns)
    if fmt is DatasetFormat.PREFERENCE:
        return parse_preference(record, columns)
    return _CHAT_PARSERS[fmt](record, columns)


