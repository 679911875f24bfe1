"""Row lengths in tokens, measured with the tokenizer the model will use; bounded memory.

Lengths are kept as a histogram (length -> rows), so quantiles are exact while memory
grows with the number of distinct lengths, not with the number of rows.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from kubetune.api.dataset import TokenStats
from kubetune_trainer.data.formats import ChatExample, Example, Message, PreferenceExample, render_text

_BATCH = 256


def load_tokenizer(name: str, token: str | None) -> Any:
    """A local folder, or a model repo on the Hub (HF_ENDPOINT applies)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name, token=token) if not Path(name).is_dir() \
        else AutoTokenizer.from_pretrained(name)


class TokenMeter:
    def __init__(self, tokenizer: Any, max_seq_length: int) -> None:
        self._tokenizer = tokenizer
        self._max = max_seq_length
        self._templated: list[str] = []  # already hold the template's special tokens
        self._plain: list[str] = []
        self._lengths: Counter[int] = Counter()
        self._has_template = bool(getattr(tokenizer, "chat_template", None))

    def add(self, example: Example) -> None:
        if isinstance(example, ChatExample | PreferenceExample) and self._has_template:
            if isinstance(example, PreferenceExample):  # the longer of the two conversations counts
                answer = max(example.chosen, example.rejected, key=len)
                messages = (*example.prompt, Message("assistant", answer))
            else:
                messages = example.messages
            turns = [{"role": m.role, "content": m.content} for m in messages]
            self._templated.append(self._tokenizer.apply_chat_template(turns, tokenize=False))
        else:
            self._plain.append(render_text(example))
        if len(self._templated) + len(self._plain) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        # Batched calls let a fast tokenizer work in Rust on the whole batch.
        for texts, special in ((self._templated, False), (self._plain, True)):
            if texts:
                encoded = self._tokenizer(texts, add_special_tokens=special)["input_ids"]
                self._lengths.update(len(ids) for ids in encoded)
                texts.clear()

    def stats(self) -> TokenStats | None:
        self._flush()
        total = sum(self._lengths.values())
        if total == 0:
            return None
        ordered = sorted(self._lengths)
        over = sum(count for length, count in self._lengths.items() if length > self._max)
        return TokenStats(
            min=ordered[0], median=_nearest_rank(self._lengths, ordered, 0.5, total),
            p95=_nearest_rank(self._lengths, ordered, 0.95, total), max=ordered[-1],
            over_max_percent=round(100.0 * over / total, 2),
        )


def _nearest_rank(histogram: Counter[int], ordered: list[int], quantile: float, total: int) -> int:
    rank = max(1, math.ceil(quantile * total))
    seen = 0
    for length in ordered:
        seen += histogram[length]
        if seen >= rank:
            return length
    return ordered[-1]
