"""What a row becomes: the examples every format is read into, the defect a bad row raises, and
the one-line renderings of an example. Pure Python, no torch."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

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
