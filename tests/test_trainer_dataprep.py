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
