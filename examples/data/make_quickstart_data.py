"""Write examples/data/quickstart.jsonl: a few hundred templated Q&A pairs a tiny model learns in a minute.

Every fact is asked in three wordings and always answered in one wording, so a held-out
question usually asks a fact the model has seen in another wording: the validation loss
falls quickly, which is what the quickstart wants to show. Deterministic: the same file
comes out every time (run it again after editing the tables).

    python examples/data/make_quickstart_data.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
    "Japan": "Tokyo", "China": "Beijing", "India": "New Delhi", "Egypt": "Cairo", "Kenya": "Nairobi",
    "Canada": "Ottawa", "Mexico": "Mexico City", "Brazil": "Brasilia", "Peru": "Lima", "Chile": "Santiago",
    "Norway": "Oslo", "Sweden": "Stockholm", "Finland": "Helsinki", "Poland": "Warsaw", "Greece": "Athens",
}
SOUNDS = {
    "dog": "woof", "cat": "meow", "cow": "moo", "duck": "quack", "sheep": "baa", "lion": "roar",
    "owl": "hoot", "horse": "neigh", "pig": "oink", "frog": "croak", "bee": "buzz", "snake": "hiss",
}
COLOURS = {
    "banana": "yellow", "lime": "green", "cherry": "red", "plum": "purple", "orange": "orange",
    "blueberry": "blue", "coconut": "brown", "lemon": "yellow", "kiwi": "green", "strawberry": "red",
    "grape": "purple", "apricot": "orange",
}
OPPOSITES = {
    "hot": "cold", "big": "small", "fast": "slow", "up": "down", "early": "late", "happy": "sad",
    "light": "dark", "open": "closed", "full": "empty", "loud": "quiet", "old": "new", "high": "low",
    "hard": "soft", "wet": "dry", "strong": "weak",
}

# (question wordings, the one answer wording) per table.
TEMPLATES: list[tuple[dict[str, str], list[str], str]] = [
    (CAPITALS, ["What is the capital of {k}?", "Name the capital city of {k}.", "Which city is the capital of {k}?"],
     "The capital of {k} is {v}."),
    (SOUNDS, ["What sound does {a} {k} make?", "How does {a} {k} sound?", "What noise does {a} {k} make?"],
     "{A} {k} says {v}."),
    (COLOURS, ["What colour is {a} {k}?", "Which colour is a ripe {k}?", "Tell me the colour of {a} {k}."],
     "A ripe {k} is {v}."),
    (OPPOSITES, ["What is the opposite of {k}?", "Give the opposite of the word {k}.",
                 "Which word means the opposite of {k}?"],
     "The opposite of {k} is {v}."),
]
NUMBERS = range(1, 31)
NUMBER_QUESTIONS = ["What number comes after {n}?", "Which number follows {n}?", "Count one up from {n}."]
NUMBER_ANSWER = "The number after {n} is {m}."


def rows() -> list[dict[str, object]]:
    pairs: list[tuple[str, str]] = []
    for table, questions, answer in TEMPLATES:
        for key, value in table.items():
            article = "an" if key[0] in "aeiou" else "a"
            words = {"k": key, "v": value, "a": article, "A": article.capitalize()}
            pairs.extend((q.format(**words), answer.format(**words)) for q in questions)
    for n in NUMBERS:
        pairs.extend((q.format(n=n), NUMBER_ANSWER.format(n=n, m=n + 1)) for q in NUMBER_QUESTIONS)
    random.Random(20240611).shuffle(pairs)
    return [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in pairs]


def main() -> None:
    out = Path(__file__).with_name("quickstart.jsonl")
    lines = [json.dumps(row, ensure_ascii=False) for row in rows()]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} rows to {out}")


if __name__ == "__main__":
    main()
