"""Data preparation for training: rendering, loss masks, truncation, mixing and splitting."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from kubetune.api.tuningjob import DatasetsSpec
from kubetune_trainer.chattemplate import IM_END, render_chatml
from kubetune_trainer.collate import PackRows, PadToLongest
from kubetune_trainer.datamix import LoadedDataset, mix_datasets
from kubetune_trainer.dataprep import IGNORE_INDEX, tokenize_for_classification, tokenize_for_generation
from kubetune_trainer.formats import ChatExample, ClassificationExample, Message, TextExample
from kubetune_trainer.scratch import train_tokenizer

CHATS = [
    ChatExample((Message("user", "What is the capital of France?"), Message("assistant", "Paris."))),
    ChatExample((Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello there"),
                 Message("user", "And Peru?"), Message("assistant", "Lima is the capital of Peru."))),
]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    texts = [m.content for c in CHATS for m in c.messages] * 20 + ["plain text about Rome and Oslo"] * 5
    return train_tokenizer(texts, vocab_size=300)


def test_python_chatml_matches_the_jinja_template(tokenizer: Any) -> None:
    for chat in CHATS:
        text, spans = render_chatml(chat)
        messages = [{"role": m.role, "content": m.content} for m in chat.messages]
        assert text == tokenizer.apply_chat_template(messages, tokenize=False)
        answers = [m.content + IM_END for m in chat.messages if m.role == "assistant"]
        assert [text[s:e] for s, e in spans] == answers


def test_loss_counts_answers_only(tokenizer: Any) -> None:
    data = tokenize_for_generation(CHATS, tokenizer, max_length=512)
    assert len(data) == 2
    for row, chat in zip(range(len(data)), CHATS, strict=True):
        item = data[row]
        learned = tokenizer.decode([t for t, lab in zip(item["input_ids"], item["labels"], strict=True)
                                    if lab != IGNORE_INDEX])
        expected = "".join(m.content + IM_END for m in chat.messages if m.role == "assistant")
        assert learned == expected
        learned_positions = item["labels"] != IGNORE_INDEX
        assert (item["labels"][learned_positions] == item["input_ids"][learned_positions]).all()


def test_train_on_inputs_and_text_rows_count_every_token(tokenizer: Any) -> None:
    data = tokenize_for_generation([*CHATS, TextExample("plain text about Rome")], tokenizer, max_length=512,
                                   train_on_inputs=True)
    assert data.mask is not None and data.mask.all()
    text_only = tokenize_for_generation([TextExample("plain text about Rome")], tokenizer, max_length=512)
    assert text_only.mask is not None and text_only.mask.all()
    assert tokenizer.decode(text_only[0]["input_ids"]).endswith(IM_END)


def test_a_foreign_template_without_generation_blocks_masks_by_prefix(tokenizer: Any) -> None:
    tokenizer = train_tokenizer(["a b c"], vocab_size=280)
    tokenizer.chat_template = (
        "{% for m in messages %}{{ '[' + m['role'] + ']: ' + m['content'] + ' </s>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '[assistant]: ' }}{% endif %}"
    )
    data = tokenize_for_generation(CHATS[:1], tokenizer, max_length=512)
    item = data[0]
    learned = tokenizer.decode([t for t, lab in zip(item["input_ids"], item["labels"], strict=True)
                                if lab != IGNORE_INDEX])
    assert learned == "Paris. </s>"


def test_truncation_drops_rows_without_an_answer_left(tokenizer: Any) -> None:
    long_prompt = ChatExample((Message("user", "capital " * 200), Message("assistant", "Paris.")))
    data = tokenize_for_generation([long_prompt, CHATS[0]], tokenizer, max_length=32)
    assert len(data) == 1 and data.dropped == 1
    assert data.lengths.max() <= 32


def test_classification_targets(tokenizer: Any) -> None:
    rows = [ClassificationExample("Rome", ("b",)), ClassificationExample("Oslo", ("a", "b"))]
    multi = tokenize_for_classification(rows, tokenizer, max_length=16, labels=["a", "b"], multi_label=True)
    assert multi.targets is not None and multi.targets.tolist() == [[0, 1], [1, 1]]
    single = tokenize_for_classification(rows[:1], tokenizer, max_length=16, labels=["a", "b"], multi_label=False)
    assert single.targets is not None and single.targets.tolist() == [1]


def test_collators(tokenizer: Any) -> None:
    data = tokenize_for_generation(CHATS, tokenizer, max_length=512)
    padded = PadToLongest(tokenizer.pad_token_id, token_labels=True)([data[0], data[1]])
    shorter = len(data[0]["input_ids"])
    assert padded["input_ids"].shape == (2, max(data.lengths))
    assert padded["attention_mask"][0].sum() == shorter
    assert (padded["labels"][0, shorter:] == IGNORE_INDEX).all()
    packed = PackRows()([data[0], data[1]])
    assert packed["input_ids"].shape == (1, int(data.lengths.sum()))
    assert packed["position_ids"][0, shorter] == 0
    assert packed["labels"][0, shorter] == IGNORE_INDEX


def _loaded(name: str, n: int, weight: float = 1.0) -> LoadedDataset:
    from kubetune.api.dataset import DatasetFormat

    rows = [TextExample(f"{name}-{i}") for i in range(n)]
    return LoadedDataset(name=name, examples=list(rows), fmt=DatasetFormat.TEXT, revision=None, weight=weight)


def _names(examples: list[Any]) -> list[str]:
    return [e.text for e in examples]


def test_mixing_by_weight_capping_and_splitting_is_deterministic() -> None:
    spec = DatasetsSpec.model_validate({"train": [{"dataset": "a"}, {"dataset": "b"}], "validationSplit": 0.1})
    sets = [_loaded("a", 100, weight=2.0), _loaded("b", 100, weight=0.5)]
    mix = mix_datasets(spec, sets, [], seed=1, max_samples=None)
    from_a = [n for n in _names(mix.train) if n.startswith("a-")]
    from_b = [n for n in _names(mix.train) if n.startswith("b-")]
    assert len(from_a) == 180 and len(from_b) == 45  # 90 kept rows x2, 90 kept rows x0.5
    assert not set(_names(mix.validation)) & set(_names(mix.train))
    assert len(mix.validation) == 20
    again = mix_datasets(spec, sets, [], seed=1, max_samples=None)
    assert _names(again.train) == _names(mix.train)
    capped = mix_datasets(spec, sets, [], seed=1, max_samples=50)
    assert len(capped.train) == 50
    assert set(_names(capped.train)) <= set(_names(mix.train))
    other_seed = mix_datasets(spec, sets, [], seed=2, max_samples=50)
    assert _names(other_seed.train) != _names(capped.train)


def test_validation_entries_or_a_small_holdout() -> None:
    spec = DatasetsSpec.model_validate({"train": [{"dataset": "a"}], "validation": [{"dataset": "v"}]})
    mix = mix_datasets(spec, [_loaded("a", 40)], [_loaded("v", 7)], seed=0, max_samples=None)
    assert len(mix.train) == 40 and len(mix.validation) == 7
    spec = DatasetsSpec.model_validate({"train": [{"dataset": "a"}]})
    mix = mix_datasets(spec, [_loaded("a", 40)], [], seed=0, max_samples=None)
    assert len(mix.validation) == 2 and len(mix.train) == 38
    assert "held out 2" in mix.note
    assert np.isin(_names(mix.validation), _names(mix.train)).sum() == 0


# --- the fast encoding against the straightforward one --------------------------------------

def _alpaca_examples(count: int) -> list[Any]:
    """alpaca rows as the trainer parses them: an input on ~40% of rows, log-normal answer lengths."""
    from kubetune.api.dataset import ColumnMapping, DatasetFormat
    from kubetune_trainer.formats import parse_record

    rng = np.random.default_rng(7)
    words = ["".join(rng.choice(list("bdfgklmnprstvz"), 1)) + "".join(rng.choice(list("aeiou"), 1)) * int(n)
             for n in rng.integers(1, 4, 300)] + ["Rome.", "Oslo,", "  two  spaces", "tab\there", "é"]

    def sentence(length: int) -> str:
        return " ".join(words[int(i)] for i in rng.integers(0, len(words), length))

    rows = [{"instruction": sentence(int(rng.integers(3, 20))),
             "input": sentence(int(rng.integers(5, 60))) if rng.random() < 0.4 else "",
             "output": sentence(int(np.clip(rng.lognormal(np.log(30), 1.0), 1, 400)))} for _ in range(count)]
    return [parse_record(row, DatasetFormat.ALPACA, ColumnMapping()) for row in rows]


@pytest.fixture(scope="module")
def alpaca() -> tuple[list[Any], Any]:
    """Generated alpaca rows (40% with an input, a long tail of answers) and a tokenizer trained on them."""
    examples = _alpaca_examples(300)
    texts = [m.content for e in examples[:150] for m in e.messages]
    return examples, train_tokenizer(texts, vocab_size=400)


def _reference(examples: list[Any], tokenizer: Any, max_length: int, *,
               train_on_inputs: bool = False) -> list[tuple[list[int], list[bool]]]:
    """One `tokenizer(...)` call per row and a loop per token: slow and obviously right."""
    from kubetune_trainer.dataprep import render_examples

    texts, spans = render_examples(examples, tokenizer, train_on_inputs=train_on_inputs)
    rows = []
    for text, row_spans in zip(texts, spans, strict=True):
        encoded = tokenizer(text, add_special_tokens=False, truncation=True, max_length=max_length,
                            return_offsets_mapping=True)
        mask = [any(s <= start < e for s, e in row_spans) for start, _ in encoded["offset_mapping"]]
        if any(mask):
            rows.append((list(encoded["input_ids"]), mask))
    return rows


def _rows(data: Any) -> list[tuple[list[int], list[bool]]]:
    assert data.mask is not None
    return [(data.ids[b:e].tolist(), data.mask[b:e].tolist())
            for b, e in zip(data.starts[:-1], data.starts[1:], strict=True)]


@pytest.mark.parametrize("max_length", [1024, 96])
@pytest.mark.parametrize("train_on_inputs", [False, True])
def test_generation_matches_a_per_row_reference(alpaca: tuple[list[Any], Any], max_length: int,
                                                train_on_inputs: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from kubetune_trainer import dataprep

    examples, tokenizer = alpaca
    mixed = [*examples, TextExample("plain text about Rome"), TextExample("")]
    monkeypatch.setattr(dataprep, "_CHUNK", 64)  # several chunks, the last one short
    data = tokenize_for_generation(mixed, tokenizer, max_length=max_length, train_on_inputs=train_on_inputs)
    expected = _reference(mixed, tokenizer, max_length, train_on_inputs=train_on_inputs)
    assert _rows(data) == expected
    assert len(data) + data.dropped == len(mixed)
    assert sum(bool(e.messages[0].content.count("\n\n")) for e in examples) > 50  # rows with an input
    if max_length == 96:  # the truncation paths were exercised: rows cut, rows left without an answer
        assert (data.lengths == 96).sum() > 30
        assert data.dropped > 0 or train_on_inputs


def test_left_truncation_and_the_backend_settings_are_kept(alpaca: tuple[list[Any], Any]) -> None:
    examples, tokenizer = alpaca
    tokenizer.truncation_side = "left"
    try:
        expected = _reference(examples[:100], tokenizer, 80)
        backend = tokenizer.backend_tokenizer
        backend.enable_truncation(7, direction="right")
        backend.enable_padding(pad_id=tokenizer.pad_token_id, pad_token=tokenizer.pad_token, length=9)
        truncation, padding = backend.truncation, backend.padding
        data = tokenize_for_generation(examples[:100], tokenizer, max_length=80)
        assert _rows(data) == expected
        assert backend.truncation == truncation and backend.padding == padding
    finally:
        tokenizer.truncation_side = "right"
        tokenizer.backend_tokenizer.no_padding()
        tokenizer.backend_tokenizer.no_truncation()


def test_classification_matches_the_tokenizer_call(alpaca: tuple[list[Any], Any],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from kubetune_trainer import dataprep

    examples, tokenizer = alpaca
    texts = [e.messages[-1].content for e in examples[:200]] + [""]
    rows = [ClassificationExample(text, ("a",) if i % 2 else ("b",)) for i, text in enumerate(texts)]
    monkeypatch.setattr(dataprep, "_CHUNK", 64)
    data = tokenize_for_classification(rows, tokenizer, max_length=48, labels=["a", "b"], multi_label=False)
    expected = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=48)["input_ids"]
    kept = [i for i, ids in enumerate(expected) if ids]
    assert [data[i]["input_ids"].tolist() for i in range(len(data))] == [expected[i] for i in kept]
    assert data.targets is not None and data.targets.tolist() == [i % 2 == 0 for i in kept]
    assert data.dropped == 1 and (data.lengths == 48).sum() > 30


def test_the_fallback_through_the_tokenizer_call_agrees(alpaca: tuple[list[Any], Any]) -> None:
    """Tokenizers without a Rust backend go through `tokenizer(...)`: same ids, rows and mask."""
    from kubetune_trainer import dataprep

    examples, tokenizer = alpaca
    texts, spans = dataprep.render_examples(examples, tokenizer, train_on_inputs=False)
    fast = dataprep._encode(tokenizer, texts, 96, spans)
    fallback = dataprep._encode_transformers(tokenizer, texts, 96, spans)
    assert fast.mask is not None and fallback.mask is not None
    assert np.array_equal(fast.ids, fallback.ids) and np.array_equal(fast.starts, fallback.starts)
    assert np.array_equal(fast.mask, fallback.mask) and 0 < fast.mask.sum() < len(fast.mask)
