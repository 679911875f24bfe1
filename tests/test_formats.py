"""Row formats: good rows become the right Example, bad rows name the field, auto-detection."""

from __future__ import annotations

from typing import Any

import pytest

from kubetune.api.dataset import ColumnMapping, DatasetFormat
from kubetune_trainer.data.formats import (
    ChatExample,
    ClassificationExample,
    Message,
    RowDefect,
    TextExample,
    detect_format,
    parse_record,
    preview_line,
    render_text,
)

F = DatasetFormat
NO_COLUMNS = ColumnMapping()


def chat(*turns: tuple[str, str]) -> ChatExample:
    return ChatExample(tuple(Message(role, content) for role, content in turns))  # type: ignore[arg-type]


GOOD_ROWS: list[tuple[DatasetFormat, dict[str, Any], Any]] = [
    (F.ALPACA, {"instruction": "Add", "input": "2+2", "output": "4"},
     chat(("user", "Add\n\n2+2"), ("assistant", "4"))),
    (F.ALPACA, {"instruction": "Greet", "input": "", "output": "Hi", "system": "Be brief"},
     chat(("system", "Be brief"), ("user", "Greet"), ("assistant", "Hi"))),
    (F.ALPACA, {"instruction": "Greet", "output": "Hi"}, chat(("user", "Greet"), ("assistant", "Hi"))),
    (F.MESSAGES, {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
                               {"role": "assistant", "content": "A"}]},
     chat(("system", "S"), ("user", "Q"), ("assistant", "A"))),
    (F.MESSAGES, {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hel"},
                                                            {"type": "text", "text": "lo"}]},
                               {"role": "assistant", "content": "Hi", "weight": 1}]},
     chat(("user", "Hello"), ("assistant", "Hi"))),
    (F.MESSAGES, {"messages": '[{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]'},
     chat(("user", "Q"), ("assistant", "A"))),
    (F.SHAREGPT, {"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "Q1"},
                                    {"from": "gpt", "value": "A1"}, {"from": "user", "value": "Q2"},
                                    {"from": "assistant", "value": "A2"}]},
     chat(("system", "S"), ("user", "Q1"), ("assistant", "A1"), ("user", "Q2"), ("assistant", "A2"))),
    (F.YANDEX, {"request": [{"role": "system", "text": "S"}, {"role": "user", "text": "Q"}], "response": "A"},
     chat(("system", "S"), ("user", "Q"), ("assistant", "A"))),
    (F.YANDEX, {"request": [{"role": "user", "text": "Q"}], "response": {"role": "assistant", "text": "A"}},
     chat(("user", "Q"), ("assistant", "A"))),
    (F.YANDEX, {"request": [{"role": "user", "text": "Q"}], "response": [{"role": "assistant", "text": "A"}]},
     chat(("user", "Q"), ("assistant", "A"))),
    (F.YANDEX, {"request": [{"role": "user", "text": "Q1"}, {"role": "assistant", "text": "A1"},
                            {"role": "user", "text": "Q2"}], "response": "A2"},
     chat(("user", "Q1"), ("assistant", "A1"), ("user", "Q2"), ("assistant", "A2"))),
    (F.PROMPT_COMPLETION, {"prompt": "P", "completion": "C"}, chat(("user", "P"), ("assistant", "C"))),
    (F.TEXT, {"text": "Once upon a time"}, TextExample("Once upon a time")),
    (F.CLASSIFICATION, {"text": "great", "label": "pos"}, ClassificationExample("great", ("pos",))),
    (F.CLASSIFICATION, {"text": "great", "label": ["pos", "fun"]}, ClassificationExample("great", ("pos", "fun"))),
    (F.CLASSIFICATION, {"text": "great", "label": 1}, ClassificationExample("great", ("1",))),
]


@pytest.mark.parametrize(("fmt", "record", "expected"), GOOD_ROWS)
def test_good_rows_parse_to_the_right_example(fmt: DatasetFormat, record: dict[str, Any], expected: Any) -> None:
    assert parse_record(record, fmt, NO_COLUMNS) == expected


def test_label_columns_are_one_flag_per_label() -> None:
    columns = ColumnMapping(label_columns=["toxic", "spam", "rude"])
    record = {"text": "buy now", "toxic": 0, "spam": 1, "rude": "1"}
    assert parse_record(record, F.CLASSIFICATION, columns) == ClassificationExample("buy now", ("spam", "rude"))
    with pytest.raises(RowDefect) as caught:
        parse_record({**record, "toxic": 2}, F.CLASSIFICATION, columns)
    assert caught.value.field == "toxic"
    with pytest.raises(RowDefect) as caught:
        parse_record({"text": "x", "toxic": 0, "spam": 0}, F.CLASSIFICATION, columns)
    assert caught.value.field == "rude"


def test_column_mapping_renames_fields() -> None:
    columns = ColumnMapping(instruction="question", output="answer", input="context", system="persona")
    record = {"question": "Q", "context": "C", "answer": "A", "persona": "P"}
    assert detect_format([record], columns) is F.ALPACA
    assert parse_record(record, F.ALPACA, columns) == chat(("system", "P"), ("user", "Q\n\nC"), ("assistant", "A"))
    columns = ColumnMapping(messages="dialog")
    dialog = {"dialog": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}
    assert detect_format([dialog], columns) is F.MESSAGES
    assert parse_record(dialog, F.MESSAGES, columns) == chat(("user", "Q"), ("assistant", "A"))
    columns = ColumnMapping(text="review", label="stars")
    assert parse_record({"review": "ok", "stars": "3"}, F.CLASSIFICATION, columns) == \
        ClassificationExample("ok", ("3",))
    columns = ColumnMapping(request="q", response="a")
    assert parse_record({"q": [{"role": "user", "text": "Q"}], "a": "A"}, F.YANDEX, columns) == \
        chat(("user", "Q"), ("assistant", "A"))


BAD_ROWS: list[tuple[DatasetFormat, Any, str, str]] = [
    # format, record, field named, words the message must hold
    (F.ALPACA, {"instruction": "Q"}, "output", "missing"),
    (F.ALPACA, {"instruction": "  ", "output": "A"}, "instruction", "empty"),
    (F.ALPACA, {"instruction": 5, "output": "A"}, "instruction", "string"),
    (F.ALPACA, ["not", "an", "object"], "", "object"),
    (F.MESSAGES, {"messages": "hello"}, "messages", "list"),
    (F.MESSAGES, {"messages": []}, "messages", "no turns"),
    (F.MESSAGES, {"messages": [{"role": "user", "content": "Q"}, {"role": "robot", "content": "A"}]},
     "messages[1].role", "unknown role"),
    (F.MESSAGES, {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": ""}]},
     "messages[1].content", "empty"),
    (F.MESSAGES, {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant"}]},
     "messages[1].content", "missing"),
    (F.MESSAGES, {"messages": [{"role": "user", "content": "Q"}]}, "messages", "has no assistant turn"),
    (F.MESSAGES, {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"},
                               {"role": "user", "content": "Q2"}]}, "messages[2]", "ends with a user turn"),
    (F.MESSAGES, {"messages": [{"role": "user", "content": "Q"}, {"role": "user", "content": "Q"},
                               {"role": "assistant", "content": "A"}]}, "messages[1].content", "in a row"),
    (F.MESSAGES, {"messages": [{"role": "assistant", "content": "Hi"}, {"role": "user", "content": "Q"},
                               {"role": "assistant", "content": "A"}]}, "messages[0].content", "start"),
    (F.MESSAGES, {"messages": [{"role": "user", "content": "Q"}, {"role": "system", "content": "S"},
                               {"role": "assistant", "content": "A"}]}, "messages[1].content", "system"),
    (F.MESSAGES, {"messages": [{"role": "user", "content": "Q"}, {"role": "tool", "content": "{}"},
                               {"role": "assistant", "content": "A"}]}, "messages[1].role", "tool"),
    (F.MESSAGES, {"messages": [{"role": "user", "content": "Q"},
                               {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}]},
     "messages[1].tool_calls", "tool"),
    (F.MESSAGES, {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]},
                               {"role": "assistant", "content": "A"}]}, "messages[0].content[0]", "text parts"),
    (F.SHAREGPT, {"conversations": [{"from": "human", "value": "Q"}, {"from": "bot", "value": "A"}]},
     "conversations[1].from", "unknown speaker"),
    (F.SHAREGPT, {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt"}]},
     "conversations[1].value", "missing"),
    (F.SHAREGPT, {"conversations": [{"from": "human", "value": "Q"}, {"from": "function_call", "value": "x"}]},
     "conversations[1].from", "tool"),
    (F.YANDEX, {"request": [{"role": "user", "text": "Q"}]}, "response", "missing"),
    (F.YANDEX, {"request": [{"role": "user", "text": "Q"}], "response": ""}, "response", "empty"),
    (F.YANDEX, {"request": [{"role": "user", "text": "Q"}], "response": ["A", "B"]}, "response", "exactly one"),
    (F.YANDEX, {"request": [{"role": "user", "text": "Q"}], "response": {"role": "user", "text": "A"}},
     "response.role", "assistant"),
    (F.YANDEX, {"request": [{"role": "user", "text": "Q"}, {"role": "assistant", "text": "A"}], "response": "B"},
     "request[1].text", "end with a user turn"),
    (F.YANDEX, {"request": [{"role": "user"}], "response": "A"}, "request[0].text", "missing"),
    (F.YANDEX, {"request": [], "response": "A"}, "request", "no turns"),
    (F.PROMPT_COMPLETION, {"prompt": "P", "completion": 3}, "completion", "string"),
    (F.TEXT, {"txt": "x"}, "text", "missing"),
    (F.CLASSIFICATION, {"text": "x", "label": ""}, "label", "non-empty"),
    (F.CLASSIFICATION, {"text": "x", "label": ["a", 2.5]}, "label[1]", "string"),
    (F.CLASSIFICATION, {"text": "x", "label": ["a", "a"]}, "label", "twice"),
    (F.CLASSIFICATION, {"text": "x"}, "label", "missing"),
]


@pytest.mark.parametrize(("fmt", "record", "field", "words"), BAD_ROWS)
def test_bad_rows_name_the_field(fmt: DatasetFormat, record: Any, field: str, words: str) -> None:
    with pytest.raises(RowDefect) as caught:
        parse_record(record, fmt, NO_COLUMNS)
    assert caught.value.field == field
    assert words in caught.value.message


def test_unknown_labels_are_defects_when_labels_are_given() -> None:
    allowed = ["pos", "neg"]
    assert parse_record({"text": "x", "label": "neg"}, F.CLASSIFICATION, NO_COLUMNS, labels=allowed) == \
        ClassificationExample("x", ("neg",))
    with pytest.raises(RowDefect) as caught:
        parse_record({"text": "x", "label": ["pos", "meh"]}, F.CLASSIFICATION, NO_COLUMNS, labels=allowed)
    assert caught.value.field == "label[1]"
    assert "'meh'" in caught.value.message and "pos, neg" in caught.value.message


def test_auto_format_is_refused_by_parse_record() -> None:
    with pytest.raises(ValueError, match="detect_format"):
        parse_record({"text": "x"}, F.AUTO, NO_COLUMNS)


@pytest.mark.parametrize(("fmt", "record", "expected"), GOOD_ROWS)
def test_detection_finds_every_format(fmt: DatasetFormat, record: dict[str, Any], expected: Any) -> None:
    assert detect_format([record, record], NO_COLUMNS) is fmt


def test_detection_from_label_columns_and_sharegpt_under_messages() -> None:
    assert detect_format([{"text": "x", "a": 1}], ColumnMapping(label_columns=["a"])) is F.CLASSIFICATION
    turns = [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]
    assert detect_format([{"messages": turns}], NO_COLUMNS) is F.SHAREGPT
    assert parse_record({"messages": turns}, F.SHAREGPT, NO_COLUMNS) == chat(("user", "Q"), ("assistant", "A"))


def test_detection_follows_the_majority_of_rows() -> None:
    alpaca = {"instruction": "Q", "output": "A"}
    rows: list[dict[str, Any]] = [{"text": "x"}, alpaca, alpaca, {"weird": 1}]
    assert detect_format(rows, NO_COLUMNS) is F.ALPACA


def test_chat_turns_under_either_column_name() -> None:
    openai_turns = [{"role": "developer", "content": "S"}, {"role": "user", "content": "Q"},
                    {"role": "assistant", "content": "A"}]
    expected = chat(("system", "S"), ("user", "Q"), ("assistant", "A"))
    record = {"conversations": openai_turns}
    assert detect_format([record], NO_COLUMNS) is F.MESSAGES
    assert parse_record(record, F.MESSAGES, NO_COLUMNS) == expected
    sharegpt_turns = [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]
    both = {"conversations": sharegpt_turns, "messages": "ignored"}
    assert parse_record(both, F.SHAREGPT, NO_COLUMNS) == chat(("user", "Q"), ("assistant", "A"))


def test_detection_failure_names_the_keys_seen() -> None:
    with pytest.raises(RowDefect) as caught:
        detect_format([{"question": "Q", "reply": "A"}, {"question": "Q2", "notes": ""}], NO_COLUMNS)
    assert caught.value.row == 0
    assert "question, reply, notes" in caught.value.message
    assert "spec.columns" in caught.value.message
    with pytest.raises(RowDefect, match="no JSON objects"):
        detect_format([], NO_COLUMNS)


def test_preview_is_one_short_line() -> None:
    example = chat(("user", "line one\nline two " + "x" * 300), ("assistant", "A"))
    line = preview_line(example, 120)
    assert len(line) == 120 and "\n" not in line and line.startswith("user: line one line two")
    assert render_text(example).startswith("user: line one\nline two")
    assert preview_line(ClassificationExample("great", ("pos",))) == "[pos] great"
