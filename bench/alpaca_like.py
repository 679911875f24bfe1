"""A deterministic generator of alpaca-like rows: the length mix of tatsu-lab/alpaca without the Hub.

Real alpaca answers are mostly short with a long tail (FIELD-NOTES: median ~60 tokens, a few
rows past 1,000), and that mix is what makes padding expensive: a batch is padded to its
longest row. The rows here copy the shape, not the language: pseudo-words drawn with Zipf
frequencies (so a BPE tokenizer trained on them merges like it would on prose), instruction
lengths of a few to ~25 words, an `input` on ~40% of rows, and log-normal answer lengths.

    python -m bench.alpaca_like --rows 1000 --out /tmp/alpaca.jsonl
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

VOCABULARY_SIZE = 4000
VOCABULARY_SEED = 20240611
ANSWER_MEDIAN_WORDS = 40.0  # ~60 tokens with the benchmarks' tokenizer
ANSWER_SIGMA = 1.0  # log-normal spread: the long tail
ANSWER_MAX_WORDS = 1500
INPUT_SHARE = 0.4

_CONSONANTS = "bcdfghjklmnprstvwz"
_VOWELS = "aeiou"


def _vocabulary() -> list[str]:
    """The same words for every seed: rows of any seed are one language, as a tokenizer expects."""
    rng = np.random.default_rng(VOCABULARY_SEED)
    syllables = [c + v for c in _CONSONANTS for v in _VOWELS]
    words: dict[str, None] = {}
    while len(words) < VOCABULARY_SIZE:
        count = int(rng.integers(1, 4))
        words["".join(syllables[int(i)] for i in rng.integers(0, len(syllables), count))] = None
    return list(words)


def _words(rng: np.random.Generator, vocabulary: list[str], total: int) -> np.ndarray:
    """`total` word indices with Zipf frequencies (rank r drawn with weight 1/r)."""
    weights = 1.0 / np.arange(1, len(vocabulary) + 1)
    return rng.choice(len(vocabulary), size=total, p=weights / weights.sum())


def _sentences(vocabulary: list[str], indices: np.ndarray, end: str) -> str:
    words = [vocabulary[i] for i in indices]
    if not words:
        return ""
    # A full stop every dozen words, so the text has sentence punctuation to tokenize.
    for position in range(11, len(words) - 1, 12):
        words[position] += "."
        words[position + 1] = words[position + 1].capitalize()
    words[0] = words[0].capitalize()
    return " ".join(words) + end


def alpaca_rows(count: int, seed: int = 0) -> list[dict[str, str]]:
    """`count` rows with `instruction`, `input` (often empty) and `output`; the same rows for the same seed."""
    vocabulary = _vocabulary()
    rng = np.random.default_rng(seed)
    instruction_lengths = rng.integers(4, 26, count)
    input_lengths = np.where(rng.random(count) < INPUT_SHARE, rng.integers(5, 80, count), 0)
    answer_lengths = np.clip(
        np.rint(rng.lognormal(np.log(ANSWER_MEDIAN_WORDS), ANSWER_SIGMA, count)), 1, ANSWER_MAX_WORDS
    ).astype(np.int64)
    lengths = np.stack([instruction_lengths, input_lengths, answer_lengths], axis=1).reshape(-1)
    words = _words(rng, vocabulary, int(lengths.sum()))
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    rows: list[dict[str, str]] = []
    for row in range(count):
        part = 3 * row
        pieces = [words[bounds[part + k]:bounds[part + k + 1]] for k in range(3)]
        rows.append({
            "instruction": _sentences(vocabulary, pieces[0], "?" if row % 3 else "."),
            "input": _sentences(vocabulary, pieces[1], "."),
            "output": _sentences(vocabulary, pieces[2], "."),
        })
    return rows


def write_jsonl(rows: Iterable[dict[str, str]], path: Path) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False))
            out.write("\n")
    return path


def row_texts(rows: Iterable[dict[str, str]]) -> Iterator[str]:
    """Every text field, for training a tokenizer on the data."""
    for row in rows:
        yield from (row["instruction"], row["input"], row["output"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    write_jsonl(alpaca_rows(args.rows, args.seed), args.out)
    print(f"wrote {args.rows} rows to {args.out}")


if __name__ == "__main__":
    main()
