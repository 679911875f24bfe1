"""Examples -> token ids and loss labels, fast: batched fast-tokenizer encoding, vectorised masks.

The slow parts of the usual pipeline are Python loops per row and per token (render,
tokenize, build labels, truncate). Here rows are rendered to text with the character spans
the loss counts (answers, or everything for text rows), and the texts are encoded by the Rust
tokenizer itself (`tokenizers.Tokenizer.encode_batch`, truncation set on it, a few thousand
rows per call, on a worker thread while the next chunk is rendered) with every Encoding's ids
read straight into numpy: going through `tokenizer(...)` instead turns every token into Python
ints and tuples, which took longer than the encoding and held gigabytes. The loss mask needs
no Python work per token either (answermask.py). The result is stored flat (CSR style: one id
array, one row-start array), which is compact and slices cheaply.

Used by the trainer and by bench/ (which compares it with SFTTrainer's own preparation).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from kubetune_trainer.data.answermask import bytes_mask, offsets_mask, token_byte_lengths
from kubetune_trainer.data.chattemplate import CHATML_TEMPLATE, Span, render_chatml, render_with_template
from kubetune_trainer.data.formats import ChatExample, ClassificationExample, Example, TextExample
from kubetune_trainer.gcpause import gc_paused

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


# Texts to encode and, when the loss is masked, the character spans it counts, row by row.
_Chunk = tuple[list[str], list[list[Span]] | None]


def _chunks(count: int, render: Callable[[int, int], _Chunk]) -> Iterator[_Chunk]:
    """Rows [begin, end) rendered a chunk at a time, when the encoder asks for them."""
    for begin in range(0, count, _CHUNK):
        yield render(begin, min(begin + _CHUNK, count))


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


def _joined(id_parts: list[np.ndarray], length_parts: list[np.ndarray],
            mask_parts: list[np.ndarray] | None) -> _Encoded:
    """The chunks' arrays as one `_Encoded` (`length_parts` starts with a zero)."""
    starts = np.cumsum(np.concatenate(length_parts))
    ids = np.concatenate(id_parts) if id_parts else np.zeros(0, dtype=np.int32)
    mask = None if mask_parts is None else np.concatenate(mask_parts) if mask_parts else np.zeros(0, dtype=bool)
    return _Encoded(ids=ids, starts=starts, mask=mask)


def _encode_backend(backend: Any, chunks: Iterator[_Chunk], *, masked: bool, max_length: int,
                    cut_on_left: bool) -> _Encoded:
    """Encode chunk by chunk, reading every Encoding's ids straight into numpy.

    The Rust call releases the GIL, so it runs on a worker thread while this thread renders
    the next chunk and copies out the previous one. No chunk's Encoding objects outlive it:
    what is kept is 5 bytes per token (id and mask), not Python lists for the whole dataset.
    Offsets are only computed when the mask needs them: not for classification, and not where
    the mask follows from the ids alone (byte-level BPE); otherwise a few are looked up per span.
    """
    chain = itertools.chain.from_iterable
    id_parts: list[np.ndarray] = []
    mask_parts: list[np.ndarray] = []
    length_parts: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
    has_fast = hasattr(backend, "encode_batch_fast")  # tokenizers >= 0.21
    byte_lengths = token_byte_lengths(backend) if masked and has_fast else None
    without_offsets = has_fast and (not masked or byte_lengths is not None)

    def encode(texts: list[str]) -> list[Any]:
        if without_offsets:
            return backend.encode_batch_fast(texts, add_special_tokens=False)
        return backend.encode_batch(texts, add_special_tokens=False)

    with ThreadPoolExecutor(max_workers=1) as pool:
        chunk = next(chunks, None)
        pending = pool.submit(encode, chunk[0]) if chunk is not None else None
        while chunk is not None and pending is not None:
            texts, spans = chunk
            chunk = next(chunks, None)  # rendered while the worker encodes the current one
            encodings = pending.result()
            pending = pool.submit(encode, chunk[0]) if chunk is not None else None
            lengths = np.fromiter(map(len, encodings), dtype=np.int64, count=len(encodings))
            ids = np.fromiter(chain(e.ids for e in encodings), dtype=np.int32, count=int(lengths.sum()))
            length_parts.append(lengths)
            id_parts.append(ids)
            if masked:
                assert spans is not None
                chunk_mask = None
                if byte_lengths is not None:
                    chunk_mask = bytes_mask(ids, lengths, texts, spans, byte_lengths, max_length=max_length,
                                            cut_on_left=cut_on_left)
                    if chunk_mask is None:  # the ids did not cover the texts' bytes: again, with offsets
                        encodings = backend.encode_batch(texts, add_special_tokens=False)
                mask_parts.append(chunk_mask if chunk_mask is not None else offsets_mask(encodings, lengths, spans))
            del encodings
    return _joined(id_parts, length_parts, mask_parts if masked else None)


def _encode_transformers(tokenizer: Any, chunks: Iterator[_Chunk], max_length: int, *, masked: bool) -> _Encoded:
    """The same encoding through `tokenizer(...)`, for tokenizers without a Rust backend."""
    chain = itertools.chain.from_iterable
    id_parts: list[np.ndarray] = []
    mask_parts: list[np.ndarray] = []
    length_parts: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
    for texts, spans in chunks:
        encoded = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_length,
                            return_attention_mask=False, return_offsets_mapping=masked)
        rows: list[list[int]] = encoded["input_ids"]
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        total = int(lengths.sum())
        length_parts.append(lengths)
        id_parts.append(np.fromiter(chain(rows), dtype=np.int32, count=total))
        if masked:
            assert spans is not None
            starts = np.zeros(len(rows) + 1, dtype=np.int64)
            np.cumsum(lengths, out=starts[1:])
            token_starts = np.fromiter((pair[0] for pair in chain(encoded["offset_mapping"])), dtype=np.int64,
                                       count=total)
            mask_parts.append(_span_mask(token_starts, starts, texts, spans))
    return _joined(id_parts, length_parts, mask_parts if masked else None)


def _encode(tokenizer: Any, chunks: Iterator[_Chunk], max_length: int, *, masked: bool) -> _Encoded:
    """`tokenizer(texts, add_special_tokens=False, truncation=True, max_length=...)` as flat arrays,
    plus, when `masked`, the mask of tokens starting inside each row's spans."""
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is None:
        return _encode_transformers(tokenizer, chunks, max_length, masked=masked)
    split_special_tokens = bool(getattr(tokenizer, "split_special_tokens", False))
    direction = tokenizer.truncation_side
    with _truncating(backend, max_length=max_length, direction=direction, split_special_tokens=split_special_tokens):
        return _encode_backend(backend, chunks, masked=masked, max_length=max_length, cut_on_left=direction == "left")


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
    def render(begin: int, end: int) -> _Chunk:
        return render_examples(examples[begin:end], tokenizer, train_on_inputs=train_on_inputs)

    with gc_paused():
        encoded = _encode(tokenizer, _chunks(len(examples), render), max_length, masked=True)
    ids, starts, mask = encoded.ids, encoded.starts, encoded.mask
    assert mask is not None
    data = TokenizedData(ids=ids, starts=starts, mask=mask)
    per_row = np.add.reduceat(mask.astype(np.int64), starts[:-1]) if len(ids) else np.zeros(len(examples), np.int64)
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
    with gc_paused():
        encoded = _encode(tokenizer, _chunks(len(texts), lambda begin, end: (texts[begin:end], None)), max_length,
                          masked=False)
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
