"""Preference rows (a prompt, a chosen and a rejected answer), for method.objective dpo.

Three shapes are read, all into a PreferenceExample:
- trl's standard form and most Hub preference sets: `{"prompt": str, "chosen": str, "rejected": str}`
  (an optional system column);
- trl's conversational form: `{"chosen": [turns], "rejected": [turns]}`, both the same conversation
  up to their last (assistant) turn, or with the shared turns in `"prompt": [turns]` and one
  assistant turn in each of chosen and rejected;
- OpenAI's preference fine-tuning JSONL: `{"input": {"messages": [turns]}, "preferred_output":
  [assistant turn], "non_preferred_output": [assistant turn]}`.

A defect names the field at fault, e.g. `chosen[2].content` or `preferred_output[0].role`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubetune.api.dataset import ColumnMapping
from kubetune_trainer.data.formats import (
    Message,
    PreferenceExample,
    RowDefect,
    _col,
    _kind,
    _maybe_json,
    _message_content,
    _refuse_tools,
    _require,
    _system_turn,
    _text,
    check_turn_order,
    turn_path,
)

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_OPENAI_KEYS = ("preferred_output", "non_preferred_output")


def parse_preference(record: Mapping[str, Any], columns: ColumnMapping) -> PreferenceExample:
    if all(key in record for key in _OPENAI_KEYS) and not columns.chosen:
        return _parse_openai(record)
    chosen_key, rejected_key = _col(columns, "chosen"), _col(columns, "rejected")
    chosen = _maybe_json(_require(record, chosen_key))
    rejected = _maybe_json(_require(record, rejected_key))
    if isinstance(chosen, str) and isinstance(rejected, str):
        return _parse_standard(record, columns, chosen_key, rejected_key)
    if isinstance(chosen, list) and isinstance(rejected, list):
        return _parse_conversational(record, columns, chosen_key, chosen, rejected_key, rejected)
    raise RowDefect(chosen_key if not isinstance(chosen, str | list) else rejected_key,
                    f"{chosen_key} and {rejected_key} must both be strings (with a prompt column) or both lists of "
                    f"turns, got {_kind(chosen)} and {_kind(rejected)}")


def _different(chosen: str, rejected: str, path: str) -> None:
    if chosen.strip() == rejected.strip():
        raise RowDefect(path, "the rejected answer is the same as the chosen one: there is no preference to learn; "
                              "fix or remove the row")


def _parse_standard(record: Mapping[str, Any], columns: ColumnMapping, chosen_key: str,
                    rejected_key: str) -> PreferenceExample:
    prompt_key = _col(columns, "prompt")
    if prompt_key not in record or record[prompt_key] is None:
        raise RowDefect(prompt_key, f"missing field {prompt_key!r}: string answers need the prompt they answer "
                                    f"(or give {chosen_key} and {rejected_key} as lists of turns)")
    prompt = _maybe_json(record[prompt_key])
    chosen = _text(record[chosen_key], chosen_key)
    rejected = _text(record[rejected_key], rejected_key)
    _different(chosen, rejected, rejected_key)
    system = _system_turn(record, columns)
    if isinstance(prompt, list):
        turns, paths = _turns(prompt, prompt_key)
        return _example([*system, *turns], [_col(columns, "system")] * len(system) + paths, prompt_key,
                        chosen, rejected)
    return _example([*system, Message("user", _text(prompt, prompt_key))],
                    [_col(columns, "system")] * len(system) + [prompt_key], prompt_key, chosen, rejected)


def _parse_conversational(record: Mapping[str, Any], columns: ColumnMapping, chosen_key: str, chosen: list[Any],
                          rejected_key: str, rejected: list[Any]) -> PreferenceExample:
    chosen_turns, chosen_paths = _turns(chosen, chosen_key)
    rejected_turns, rejected_paths = _turns(rejected, rejected_key)
    prompt_key = _col(columns, "prompt")
    explicit = _maybe_json(record.get(prompt_key))
    system = _system_turn(record, columns)
    system_paths = [_col(columns, "system")] * len(system)
    if explicit is not None:
        if not isinstance(explicit, list):
            raise RowDefect(prompt_key, f"must be a list of turns when {chosen_key} and {rejected_key} are, "
                                        f"got {_kind(explicit)}")
        prompt, prompt_paths = _turns(explicit, prompt_key)
        chosen_answer = _single_answer(chosen_turns, chosen_paths, chosen_key)
        rejected_answer = _single_answer(rejected_turns, rejected_paths, rejected_key)
    else:
        # Implicit prompt: both lists are the same conversation up to the last turn.
        prompt, prompt_paths = chosen_turns[:-1], chosen_paths[:-1]
        if len(rejected_turns) != len(chosen_turns) or rejected_turns[:-1] != prompt:
            where = next((rejected_paths[i] for i, (a, b) in enumerate(zip(prompt, rejected_turns, strict=False))
                          if a != b), rejected_key)
            raise RowDefect(turn_path(where), f"{chosen_key} and {rejected_key} must share every turn but the last "
                                              "(the prompt), and differ only in the final assistant answer")
        chosen_answer = _last_answer(chosen_turns, chosen_paths, chosen_key)
        rejected_answer = _last_answer(rejected_turns, rejected_paths, rejected_key)
        if not prompt:
            raise RowDefect(chosen_key, "holds only an answer: put the user's turn before it, or give a prompt "
                                        "column")
    _different(chosen_answer, rejected_answer, rejected_key)
    return _example([*system, *prompt], [*system_paths, *prompt_paths], prompt_key if explicit is not None
                    else chosen_key, chosen_answer, rejected_answer)


def _parse_openai(record: Mapping[str, Any]) -> PreferenceExample:
    source = _maybe_json(_require(record, "input"))
    if not isinstance(source, Mapping):
        raise RowDefect("input", f"must be an object with messages, got {_kind(source)}")
    raw = _maybe_json(_require(source, "messages", "input.messages"))
    if not isinstance(raw, list):
        raise RowDefect("input.messages", f"must be a list of turns, got {_kind(raw)}")
    prompt, paths = _turns(raw, "input.messages")
    answers = []
    for key in _OPENAI_KEYS:
        value = _maybe_json(_require(record, key))
        if not isinstance(value, list) or len(value) != 1:
            count = f"{len(value)} turns" if isinstance(value, list) else _kind(value)
            raise RowDefect(key, f"must be a list holding exactly one assistant turn, got {count}")
        turns, turn_paths = _turns(value, key)
        answers.append(_single_answer(turns, turn_paths, key))
    _different(answers[0], answers[1], "non_preferred_output[0].content")
    return _example(prompt, paths, "input.messages", answers[0], answers[1])


def _turns(value: list[Any], key: str) -> tuple[list[Message], list[str]]:
    """OpenAI-style {role, content} turns (content may be text parts); tool turns are refused."""
    if not value:
        raise RowDefect(key, "has no turns")
    messages, paths = [], []
    for index, turn in enumerate(value):
        path = f"{key}[{index}]"
        if not isinstance(turn, Mapping):
            raise RowDefect(path, f"must be an object with role and content, got {_kind(turn)}")
        role = _text(_require(turn, "role", f"{path}.role"), f"{path}.role")
        _refuse_tools(role, f"{path}.role")
        if turn.get("tool_calls") or turn.get("function_call"):
            raise RowDefect(f"{path}.tool_calls", "tool calls are not supported: drop the turn or the row")
        if role not in _ROLES:
            raise RowDefect(f"{path}.role", f"unknown role {role!r}: use system, user or assistant")
        content = _message_content(_require(turn, "content", f"{path}.content"), f"{path}.content")
        messages.append(Message(_ROLES[role], content))  # type: ignore[arg-type]
        paths.append(f"{path}.content")
    return messages, paths


def _single_answer(turns: list[Message], paths: list[str], key: str) -> str:
    if len(turns) != 1:
        raise RowDefect(key, f"must hold exactly one assistant turn (the answer), got {len(turns)} turns: the "
                             "shared turns go in the prompt")
    return _last_answer(turns, paths, key)


def _last_answer(turns: list[Message], paths: list[str], key: str) -> str:
    if turns[-1].role != "assistant":
        raise RowDefect(turn_path(paths[-1]), f"the answer must be an assistant turn, not {turns[-1].role}")
    return turns[-1].content


def _example(prompt: list[Message], paths: list[str], prompt_path: str, chosen: str,
             rejected: str) -> PreferenceExample:
    check_turn_order(prompt, paths, prompt_path)
    if prompt[-1].role != "user":
        raise RowDefect(turn_path(paths[-1]), f"the prompt must end with a user turn, not {prompt[-1].role}: the "
                                              "answers reply to it")
    return PreferenceExample(prompt=tuple(prompt), chosen=chosen, rejected=rejected)
