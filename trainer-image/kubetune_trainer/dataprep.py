"""Examples -> token ids and loss labels, fast: batched fast-tokenizer encoding, vectorised masks.

The slow parts of the usual pipeline are Python loops per row and per token (render,
tokenize, build labels, truncate). Here rows are rendered to text with the character spans
the loss counts (answers, or everything for text rows), the whole batch of texts is encoded
by the Rust tokenizer in one call with truncation and offsets, and the label mask comes
from one `searchsorted` of every token's start offset against every span, over the whole
dataset at once. The result is stored flat (CSR style: one id array, one row-start array),
which is compact and slices cheaply.

Used by the trainer and by bench/ (which compares it with SFTTrainer's own preparation).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kubetune_trainer.chattemplate import CHATML_TEMPLATE, Span, render_chatml, render_with_template
from kubetune_trainer.formats import ChatExample, ClassificationExample, Example, TextExample

IGNORE_INDEX = -100
_CHUNK = 20_000  # rows per tokenizer call: bounds the memory of the Python lists it returns


@dataclass
class TokenizedData:
    """Rows of token ids, stored flat. `mask` marks the tokens the loss counts (generation);
    `targets` holds class ids, or multi-hot rows for multi-label classification."""

    ids: np.ndarray  # int32, every row's ids one after another
    starts: np.ndarray  # int64, row i is ids[starts[i]:starts[i + 1]]
    mask: np.ndarray | None = None  # bool, aligned with ids
    targets: np.ndarray | None = None  # int64 (rows,) or float32 (rows, labels)
    dropped: int = 0  # rows left with nothing to learn after truncation

    def __len__(self) -> int:
        return len(self.starts) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.starts)

    def trainable_tokens(self) -> int:
        return int(self.mask.sum()) if self.mask is not None else int(self.lengths.sum())

    def __getitem__(self, index: int) -> dict[str, Any]:
        begin, end = int(self.starts[index]), int(self.starts[index + 1])
        row: dict[str, Any] = {"input_ids": self.ids[begin:end]}
        if self.mask is not None:
            row["labels"] = np.where(self.mask[begin:end], self.ids[begin:end], IGNORE_INDEX)
        if self.targets is not None:
            row["labels"] = self.targets[index]
        return row


def render_examples(
    examples: Sequence[Example], tokenizer: Any, *, train_on_inputs: bool
) -> tuple[list[str], list[list[Span]]]:
    """Texts and the character spans the loss counts, one per example (chat or text rows)."""
    template = tokenizer.chat_template or CHATML_TEMPLATE
    eos = tokenizer.eos_token or ""
    # Text rows are encoded without automatic special tokens (like chat rows, whose template
    # writes them), so they get BOS/EOS here.
    bos = tokenizer.bos_token or ""
    texts: list[str] = [""] * len(examples)
    spans: list[list[Span]] = [[] for _ in examples]
    foreign: list[int] = []
    for index, example in enumerate(examples):
        if isinstance(example, TextExample):
            texts[index] = bos + example.text + eos
            spans[index] = [(0, len(texts[index]))]
        elif isinstance(example, ChatExample):
            if template == CHATML_TEMPLATE:
                texts[index], spans[index] = render_chatml(example)
            else:
                foreign.append(index)
        else:
            raise TypeError(f"a generation dataset cannot hold {type(example).__name__} rows")
    if foreign:
        chats = [examples[i] for i in foreign]
        variables = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
        rendered, found = render_with_template(chats, template, variables)  # type: ignore[arg-type]
        for index, text, text_spans in zip(foreign, rendered, found, strict=True):
            texts[index], spans[index] = text, text_spans
    if train_on_inputs:
        spans = [[(0, len(text))] for text in texts]
    return texts, spans


def _encode(tokenizer: Any, texts: list[str], max_length: int, offsets: bool) -> tuple[list[list[int]], list[Any]]:
    ids: list[list[int]] = []
    found: list[Any] = []
    for begin in range(0, len(texts), _CHUNK):
        encoded = tokenizer(
            texts[begin:begin + _CHUNK], add_special_tokens=False, truncation=True, max_length=max_length,
            return_attention_mask=False, return_offsets_mapping=offsets,
        )
        ids.extend(encoded["input_ids"])
        if offsets:
            found.extend(encoded["offset_mapping"])
    return ids, found


def _flat(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    starts = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    ids = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int32, count=int(starts[-1]))
    return ids, starts


def _span_mask(offsets: list[Any], starts: np.ndarray, texts: list[str], spans: list[list[Span]]) -> np.ndarray:
    """True for tokens whose first character lies inside a span of their row (whole dataset at once)."""
    total = int(starts[-1])
    token_starts = np.fromiter(
        (pair[0] for pair in itertools.chain.from_iterable(offsets)), dtype=np.int64, count=total
    )
    # Shift every row's characters by the length of the rows before it: one global axis.
    text_base = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(np.fromiter((len(t) + 1 for t in texts), dtype=np.int64, count=len(texts)), out=text_base[1:])
    token_starts += np.repeat(text_base[:-1], np.diff(starts))
    counts = np.fromiter((len(s) for s in spans), dtype=np.int64, count=len(spans))
    flat_spans = np.fromiter(
        itertools.chain.from_iterable(itertools.chain.from_iterable(spans)), dtype=np.int64,
        count=2 * int(counts.sum()),
    ).reshape(-1, 2)
    flat_spans += np.repeat(text_base[:-1], counts)[:, None]
    if not len(flat_spans):
        return np.zeros(total, dtype=bool)
    which = np.searchsorted(flat_spans[:, 0], token_starts, side="right") - 1
    inside = which >= 0
    inside[inside] = token_starts[inside] < flat_spans[which[inside], 1]
    return inside


def _keep_rows(data: TokenizedData, keep: np.ndarray) -> TokenizedData:
    if keep.all():
        return data
    token_keep = np.repeat(keep, data.lengths)
    lengths = data.lengths[keep]
    starts = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    return TokenizedData(
        ids=data.ids[token_keep], starts=starts,
        mask=data.mask[token_keep] if data.mask is not None else None,
        targets=data.targets[keep] if data.targets is not None else None,
        dropped=data.dropped + int((~keep).sum()),
    )


def tokenize_for_generation(
    examples: Sequence[Example], tokenizer: Any, *, max_length: int, train_on_inputs: bool = False
) -> TokenizedData:
    """Token ids + loss mask for chat and text rows; rows with no answer token left are dropped."""
    texts, spans = render_examples(examples, tokenizer, train_on_inputs=train_on_inputs)
    rows, offsets = _encode(tokenizer, texts, max_length, offsets=True)
    ids, starts = _flat(rows)
    del rows
    mask = _span_mask(offsets, starts, texts, spans)
    data = TokenizedData(ids=ids, starts=starts, mask=mask)
    per_row = np.add.reduceat(mask.astype(np.int64), starts[:-1]) if len(ids) else np.zeros(len(texts), np.int64)
    # reduceat repeats the next value for empty rows; an empty row has nothing to learn.
    per_row[np.diff(starts) == 0] = 0
    return _keep_rows(data, per_row > 0)


def tokenize_for_classification(
    examples: Sequence[Example], tokenizer: Any, *, max_length: int, labels: Sequence[str], multi_label: bool
) -> TokenizedData:
    """Token ids and class targets (ids, or multi-hot rows when `multi_label`)."""
    index = {label: i for i, label in enumerate(labels)}
    texts: list[str] = []
    for example in examples:
        if not isinstance(example, ClassificationExample):
            raise TypeError(f"a classification dataset cannot hold {type(example).__name__} rows")
        texts.append(example.text)
    rows, _ = _encode(tokenizer, texts, max_length, offsets=False)
    ids, starts = _flat(rows)
    targets: np.ndarray
    if multi_label:
        targets = np.zeros((len(examples), len(labels)), dtype=np.float32)
        for row, example in enumerate(examples):
            targets[row, [index[label] for label in example.labels]] = 1.0  # type: ignore[union-attr]
    else:
        targets = np.asarray([index[e.labels[0]] for e in examples], dtype=np.int64)  # type: ignore[union-attr]
    data = TokenizedData(ids=ids, starts=starts, targets=targets)
    return _keep_rows(data, np.diff(starts) > 0)
