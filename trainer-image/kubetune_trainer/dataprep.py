"""Examples -> token ids and loss labels, fast: batched fast-tokenizer encoding, vectorised masks.

The slow parts of the usual pipeline are Python loops per row and per token (render,
tokenize, build labels, truncate). Here rows are rendered to text with the character spans
the loss counts (answers, or everything for text rows), the texts are encoded by the Rust
tokenizer itself (`tokenizers.Tokenizer.encode_batch`, truncation set on it, a few thousand
rows per call) with every Encoding's ids and offsets read straight into numpy: going through
`tokenizer(...)` instead turns every token into Python ints and tuples, which took longer
than the encoding and held gigabytes. The label mask comes from one `searchsorted` of every
token's start offset against every span, over the whole dataset at once. The result is
stored flat (CSR style: one id array, one row-start array), which is compact and slices cheaply.

Used by the trainer and by bench/ (which compares it with SFTTrainer's own preparation).
"""

from __future__ import annotations

import gc
import itertools
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from kubetune_trainer.chattemplate import CHATML_TEMPLATE, Span, render_chatml, render_with_template
from kubetune_trainer.formats import ChatExample, ClassificationExample, Example, TextExample

IGNORE_INDEX = -100
_CHUNK = 5_000  # rows per Rust call: enough to keep both cores busy, few Encodings alive at once


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


@dataclass
class _Encoded:
    """Rows encoded into flat arrays, with the loss mask when spans were given."""

    ids: np.ndarray  # int32
    starts: np.ndarray  # int64, len(rows) + 1
    mask: np.ndarray | None  # bool, aligned with ids


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while encoding: the offset tuples read out of every Encoding
    (millions, all short-lived, no cycles) would otherwise trigger a collection every few hundred."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextmanager
def _truncating(backend: Any, *, max_length: int, direction: str, split_special_tokens: bool) -> Iterator[Any]:
    """The backend tokenizer set up as `tokenizer(..., truncation=True, max_length=...)` sets it,
    restored afterwards: it is shared with the tokenizer object the rest of the trainer uses."""
    truncation, padding, split = backend.truncation, backend.padding, backend.encode_special_tokens
    backend.enable_truncation(max_length, stride=0, strategy="longest_first", direction=direction)
    backend.no_padding()
    backend.encode_special_tokens = split_special_tokens
    try:
        yield backend
    finally:
        if truncation is None:
            backend.no_truncation()
        else:
            backend.enable_truncation(**{k: truncation[k] for k in ("max_length", "stride", "strategy", "direction")})
        if padding is not None:
            backend.enable_padding(**padding)
        backend.encode_special_tokens = split


def _encode_backend(backend: Any, texts: list[str], spans: list[list[Span]] | None) -> _Encoded:
    """Encode chunk by chunk, reading every Encoding's ids (and offsets) straight into numpy.

    The next chunk is encoded on a worker thread (the Rust call releases the GIL) while this
    one is copied out, and no chunk's Encoding objects or offsets outlive it: what is kept is
    5 bytes per token (id and mask), not Python lists of ints and tuples for the whole dataset.
    """
    chain = itertools.chain.from_iterable
    id_parts: list[np.ndarray] = []
    mask_parts: list[np.ndarray] = []
    length_parts: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
    chunks = [texts[begin:begin + _CHUNK] for begin in range(0, len(texts), _CHUNK)]
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = [pool.submit(backend.encode_batch, chunk, add_special_tokens=False) for chunk in chunks[:1]]
        for index in range(len(chunks)):
            encodings = pending.pop().result()
            if index + 1 < len(chunks):
                pending.append(pool.submit(backend.encode_batch, chunks[index + 1], add_special_tokens=False))
            lengths = np.fromiter(map(len, encodings), dtype=np.int64, count=len(encodings))
            total = int(lengths.sum())
            length_parts.append(lengths)
            id_parts.append(np.fromiter(chain(e.ids for e in encodings), dtype=np.int32, count=total))
            if spans is not None:
                pairs = np.fromiter(chain(chain(e.offsets for e in encodings)), dtype=np.int64, count=2 * total)
                row_starts = np.zeros(len(lengths) + 1, dtype=np.int64)
                np.cumsum(lengths, out=row_starts[1:])
                begin = index * _CHUNK
                mask_parts.append(_span_mask(pairs[0::2], row_starts, chunks[index], spans[begin:begin + len(lengths)]))
            del encodings
    starts = np.cumsum(np.concatenate(length_parts))
    ids = np.concatenate(id_parts) if id_parts else np.zeros(0, dtype=np.int32)
    mask = (np.concatenate(mask_parts) if mask_parts else np.zeros(0, dtype=bool)) if spans is not None else None
    return _Encoded(ids=ids, starts=starts, mask=mask)


def _encode_transformers(tokenizer: Any, texts: list[str], max_length: int,
                         spans: list[list[Span]] | None) -> _Encoded:
    """The same encoding through `tokenizer(...)`, for tokenizers without a Rust backend."""
    chain = itertools.chain.from_iterable
    rows: list[list[int]] = []
    found: list[Any] = []
    for begin in range(0, len(texts), _CHUNK):
        encoded = tokenizer(
            texts[begin:begin + _CHUNK], add_special_tokens=False, truncation=True, max_length=max_length,
            return_attention_mask=False, return_offsets_mapping=spans is not None,
        )
        rows.extend(encoded["input_ids"])
        if spans is not None:
            found.extend(encoded["offset_mapping"])
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    starts = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    total = int(starts[-1])
    ids = np.fromiter(chain(rows), dtype=np.int32, count=total)
    if spans is None:
        return _Encoded(ids=ids, starts=starts, mask=None)
    token_starts = np.fromiter((pair[0] for pair in chain(found)), dtype=np.int64, count=total)
    return _Encoded(ids=ids, starts=starts, mask=_span_mask(token_starts, starts, texts, spans))


def _encode(tokenizer: Any, texts: list[str], max_length: int, spans: list[list[Span]] | None = None) -> _Encoded:
    """`tokenizer(texts, add_special_tokens=False, truncation=True, max_length=...)` as flat arrays,
    plus the mask of tokens starting inside `spans` when given."""
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is None:
        return _encode_transformers(tokenizer, texts, max_length, spans)
    split_special_tokens = bool(getattr(tokenizer, "split_special_tokens", False))
    with _gc_paused(), _truncating(backend, max_length=max_length, direction=tokenizer.truncation_side,
                                   split_special_tokens=split_special_tokens):
        return _encode_backend(backend, texts, spans)


def _span_mask(token_starts: np.ndarray, starts: np.ndarray, texts: list[str], spans: list[list[Span]]) -> np.ndarray:
    """True for tokens whose first character lies inside a span of their row (all rows at once)."""
    total = int(starts[-1])
    # Shift every row's characters by the length of the rows before it: one global axis.
    text_base = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(np.fromiter((len(t) + 1 for t in texts), dtype=np.int64, count=len(texts)), out=text_base[1:])
    token_starts = token_starts + np.repeat(text_base[:-1], np.diff(starts))
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
    encoded = _encode(tokenizer, texts, max_length, spans)
    ids, starts, mask = encoded.ids, encoded.starts, encoded.mask
    assert mask is not None
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
    encoded = _encode(tokenizer, texts, max_length)
    ids, starts = encoded.ids, encoded.starts
    targets: np.ndarray
    if multi_label:
        targets = np.zeros((len(examples), len(labels)), dtype=np.float32)
        for row, example in enumerate(examples):
            targets[row, [index[label] for label in example.labels]] = 1.0  # type: ignore[union-attr]
    else:
        targets = np.asarray([index[e.labels[0]] for e in examples], dtype=np.int64)  # type: ignore[union-attr]
    data = TokenizedData(ids=ids, starts=starts, targets=targets)
    return _keep_rows(data, np.diff(starts) > 0)
