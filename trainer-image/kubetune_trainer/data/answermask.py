"""Which tokens the loss counts: those whose first character lies inside a span of their row.

Two ways to find them for a chunk of encoded rows, both exact:

- `offsets_mask`, for any tokenizer: a few offset lookups per span in the Rust `Encoding`s.
  Reading every token's offsets out as Python tuples instead cost more than all the rest of
  the Python work of preparing the data.
- `bytes_mask`, for byte-level BPE tokenizers (`token_byte_lengths` says which): there every
  row's tokens are its UTF-8 bytes cut into pieces, so where each token starts follows from
  the ids alone. That lets the encoder skip offsets altogether (`encode_batch_fast`), which
  saves the Rust side building a byte-to-character map of every text.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from kubetune_trainer.data.chattemplate import Span


def _runs_mask(opens: Any, closes: Any, total: int) -> np.ndarray:
    """True inside the token runs [opens[k], closes[k]) (empty runs allowed, overlaps merged)."""
    # +1 where a run opens, -1 where it closes: a running sum above 0 is inside some run.
    edges = np.bincount(opens, minlength=total + 1) - np.bincount(closes, minlength=total + 1)
    return np.cumsum(edges[:total]) > 0


def offsets_mask(encodings: Sequence[Any], lengths: np.ndarray, spans: Sequence[list[Span]]) -> np.ndarray:
    """The mask of a chunk of rows from their `tokenizers.Encoding`s (character offsets).

    A token's start offset never decreases along an Encoding (normalisers, pre-tokenisers and
    truncation all keep text order), so the tokens starting inside a span are one run: from
    the first token starting at or after the span's start to the first one starting at or
    after its end.
    """
    row_starts = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=row_starts[1:])
    opens: list[int] = []
    closes: list[int] = []
    for row_start, count, encoding, row_spans in zip(row_starts[:-1].tolist(), lengths.tolist(), encodings, spans,
                                                     strict=True):
        for span_start, span_end in row_spans:
            opens.append(row_start + tokens_starting_before(encoding, span_start, count))
            closes.append(row_start + tokens_starting_before(encoding, span_end, count))
    return _runs_mask(opens, closes, int(row_starts[-1]))


def tokens_starting_before(encoding: Any, position: int, count: int) -> int:
    """How many of an Encoding's `count` tokens start before character `position`.

    Usually the token covering `position` (`char_to_token`) and one neighbour's offsets answer
    it. Where no token covers it (characters a pre-tokeniser drops, text cut off by truncation,
    the end of the text) or the neighbour does not confirm it (tokens with empty offsets, which
    `char_to_token` skips), a binary search over the offsets answers it.
    """
    if position <= 0 or count == 0:
        return 0
    token = encoding.char_to_token(position)
    if token is not None:
        if encoding.token_to_chars(token)[0] < position:  # it straddles `position`: the next one may start there
            token += 1
            if token == count or encoding.token_to_chars(token)[0] >= position:
                return int(token)
        elif token == 0 or encoding.token_to_chars(token - 1)[0] < position:
            return int(token)
    elif encoding.token_to_chars(count - 1)[0] < position:
        return count
    return bisect.bisect_left(range(count), position, key=lambda index: encoding.token_to_chars(index)[0])


# --- byte-level BPE: token starts from the ids --------------------------------------------------

_CUTTING_PRE_TOKENIZERS = {"Split", "Digits", "Punctuation"}  # they only cut text (unless told to remove it)


def token_byte_lengths(backend: Any) -> np.ndarray | None:
    """How many bytes of text each token id stands for, when every encoded row is exactly its
    UTF-8 bytes cut into tokens; None when that is not guaranteed.

    It is guaranteed for byte-level BPE (GPT-2, Llama 3 and Mistral Tekken vocabularies)
    without a normaliser (it may rewrite the text), with a ByteLevel pre-tokeniser that adds no
    space, others that only cut, a vocabulary holding all 256 byte symbols (BPE drops what it
    has no token for), no word prefixes or suffixes, added tokens that swallow no whitespace
    (lstrip/rstrip), and no post-processor that trims spaces off offsets.
    """
    from tokenizers import models, pre_tokenizers

    model = backend.model
    if backend.normalizer is not None or not isinstance(model, models.BPE):
        return None
    if model.continuing_subword_prefix or model.end_of_word_suffix:
        return None
    if backend.pre_tokenizer is None or not _only_maps_to_bytes_and_cuts(_state(backend.pre_tokenizer)):
        return None
    if backend.post_processor is not None and not _keeps_offsets(_state(backend.post_processor)):
        return None
    added = backend.get_added_tokens_decoder()
    if any(token.lstrip or token.rstrip for token in added.values()):
        return None
    symbols = set(pre_tokenizers.ByteLevel.alphabet())
    vocabulary = backend.get_vocab(with_added_tokens=False)
    if not symbols <= vocabulary.keys():
        return None
    lengths = np.full(max([*vocabulary.values(), *added, -1]) + 1, -1, dtype=np.int64)
    for token, index in vocabulary.items():
        if not symbols.issuperset(token):
            return None
        lengths[index] = len(token)  # one symbol per byte
    for index, added_token in added.items():
        lengths[index] = len(added_token.content.encode("utf-8"))  # matched in the text as it is
    return lengths


def _state(component: Any) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(component.__getstate__())
    return state


def _only_maps_to_bytes_and_cuts(state: dict[str, Any]) -> bool:
    parts = state.get("pretokenizers", []) if state.get("type") == "Sequence" else [state]
    byte_level = [part for part in parts if part.get("type") == "ByteLevel"]
    cutting = all(part.get("type") in _CUTTING_PRE_TOKENIZERS and part.get("behavior") != "Removed"
                  for part in parts if part.get("type") != "ByteLevel")
    return len(byte_level) == 1 and not byte_level[0].get("add_prefix_space") and cutting


def _keeps_offsets(state: dict[str, Any]) -> bool:
    """Post-processors leave offsets alone when they add no special tokens, unless they trim them."""
    parts = state.get("processors", []) if state.get("type") == "Sequence" else [state]
    return all(part.get("type") in ("TemplateProcessing", "BertProcessing")
               or (part.get("type") in ("ByteLevel", "RobertaProcessing") and not part.get("trim_offsets"))
               for part in parts)


def bytes_mask(ids: np.ndarray, lengths: np.ndarray, texts: Sequence[str], spans: Sequence[list[Span]],
               byte_lengths: np.ndarray, *, max_length: int, cut_on_left: bool) -> np.ndarray | None:
    """The mask of a chunk of rows from their token ids (see `token_byte_lengths`).

    A token's first character lies inside a span exactly when its first byte does. Rows
    shorter than `max_length` (not truncated) must cover their text's bytes exactly; if one
    does not, the ids were not what `token_byte_lengths` promised and None says so.
    """
    token_bytes = byte_lengths[ids]
    if len(token_bytes) and token_bytes.min() <= 0:
        return None
    ends = np.cumsum(token_bytes)
    row_starts = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=row_starts[1:])
    before_row = np.concatenate([np.zeros(1, dtype=np.int64), ends])[row_starts]  # bytes of the rows before
    covered = np.diff(before_row)
    text_bytes = np.fromiter((len(t) if t.isascii() else len(t.encode("utf-8")) for t in texts), dtype=np.int64,
                             count=len(texts))
    whole = lengths < max_length
    if (covered[whole] != text_bytes[whole]).any() or (covered > text_bytes).any():
        return None
    # Every row's text on one axis, a byte apart, so one sorted array holds every token's first byte.
    text_base = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(text_bytes + 1, out=text_base[1:])
    kept_from = text_base[:-1] + (text_bytes - covered if cut_on_left else 0)
    token_firsts = ends - token_bytes + np.repeat(kept_from - before_row[:-1], lengths)
    boundaries: list[int] = []
    for base, text, row_spans in zip(text_base[:-1].tolist(), texts, spans, strict=True):
        ascii_only = text.isascii()
        for span in row_spans:
            for position in span:
                boundaries.append(base + (position if ascii_only else len(text[:position].encode("utf-8"))))
    found = np.searchsorted(token_firsts, np.asarray(boundaries, dtype=np.int64), side="left")
    return _runs_mask(found[0::2], found[1::2], len(ids))
