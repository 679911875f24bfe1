"""Small learnable datasets in every format kubetune reads, as JSON-ready rows.

The generation task maps a country to its capital (a handful of facts repeated with
varied wording), which a tiny scratch model picks up within a few dozen steps. The
classification task labels sentences by the keywords they contain. Deterministic for a
given seed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

CAPITALS = {
    "France": "Paris", "Italy": "Rome", "Spain": "Madrid", "Japan": "Tokyo",
    "Egypt": "Cairo", "Peru": "Lima", "Kenya": "Nairobi", "Norway": "Oslo",
}
_ASK = ["What is the capital of {c}?", "Name the capital of {c}.", "Capital of {c}?",
        "Which city is the capital of {c}?"]
_TOPIC_WORDS = {
    "sports": ["ball", "goal", "match", "team"],
    "food": ["pizza", "bread", "soup", "apple"],
    "music": ["song", "guitar", "drum", "piano"],
}
_FILLER = ["today", "we", "saw", "a", "big", "the", "with", "and", "very", "nice", "old", "new"]

GENERATION_FORMATS = ["alpaca", "messages", "sharegpt", "yandex", "promptCompletion", "text"]


def _pairs(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    countries = list(CAPITALS)
    out = []
    for _ in range(n):
        country = rng.choice(countries)
        out.append((rng.choice(_ASK).format(c=country), f"The capital of {country} is {CAPITALS[country]}."))
    return out


def generation_rows(fmt: str, n: int = 64, seed: int = 0) -> list[dict[str, Any]]:
    """n rows of the capitals task in `fmt` (one of GENERATION_FORMATS)."""
    rows: list[dict[str, Any]] = []
    for question, answer in _pairs(n, seed):
        if fmt == "alpaca":
            rows.append({"instruction": question, "input": "", "output": answer})
        elif fmt == "messages":
            rows.append({"messages": [{"role": "user", "content": question},
                                      {"role": "assistant", "content": answer}]})
        elif fmt == "sharegpt":
            rows.append({"conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]})
        elif fmt == "yandex":
            rows.append({"request": [{"role": "user", "text": question}], "response": answer})
        elif fmt == "promptCompletion":
            rows.append({"prompt": question, "completion": answer})
        elif fmt == "text":
            rows.append({"text": f"{question} {answer}"})
        else:
            raise ValueError(f"unknown format {fmt}")
    return rows


PREFERENCE_FORMATS = ["standard", "conversational", "openai"]


def preference_rows(fmt: str = "standard", n: int = 64, seed: int = 0) -> list[dict[str, Any]]:
    """n capitals questions with the right answer chosen and a wrong capital rejected, in `fmt`:
    trl's standard (prompt/chosen/rejected strings) or conversational form, or OpenAI's preference JSONL."""
    rng = random.Random(seed + 1)
    rows: list[dict[str, Any]] = []
    for question, answer in _pairs(n, seed):
        country = answer.removeprefix("The capital of ").split(" is ")[0]
        wrong = rng.choice([c for k, c in CAPITALS.items() if k != country])
        rejected = f"The capital of {country} is {wrong}."
        if fmt == "standard":
            rows.append({"prompt": question, "chosen": answer, "rejected": rejected})
        elif fmt == "conversational":
            user = {"role": "user", "content": question}
            rows.append({"chosen": [user, {"role": "assistant", "content": answer}],
                         "rejected": [user, {"role": "assistant", "content": rejected}]})
        elif fmt == "openai":
            rows.append({"input": {"messages": [{"role": "user", "content": question}]},
                         "preferred_output": [{"role": "assistant", "content": answer}],
                         "non_preferred_output": [{"role": "assistant", "content": rejected}]})
        else:
            raise ValueError(f"unknown preference format {fmt}")
    return rows


def classification_rows(n: int = 64, seed: int = 0, *, multi_label: bool = False) -> list[dict[str, Any]]:
    """Sentences whose topic words decide the label(s): one topic, or one or two when multi_label."""
    rng = random.Random(seed)
    topics = list(_TOPIC_WORDS)
    rows: list[dict[str, Any]] = []
    for _ in range(n):
        chosen = rng.sample(topics, rng.choice([1, 2]) if multi_label else 1)
        words = [rng.choice(_FILLER) for _ in range(4)]
        for topic in chosen:
            words += [rng.choice(_TOPIC_WORDS[topic]), rng.choice(_TOPIC_WORDS[topic])]
        rng.shuffle(words)
        text = " ".join(words)
        rows.append({"text": text, "label": sorted(chosen) if multi_label else chosen[0]})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
