"""Data preparation for training: rendering, loss masks, truncation, mixing and splitting."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from kubetune.api.tuningjob import DatasetsSpec
from kubetune_trainer.data.chattemplate import IM_END, render_chatml
from kubetune_trainer.data.datamix import LoadedDataset, mix_datasets
from kubetune_trainer.data.dataprep import IGNORE_INDEX, tokenize_for_classification, tokenize_for_generation
from kubetune_trainer.data.formats import ChatExample, ClassificationExample, Message, TextExample
from kubetune_trainer.training.collate import PackRows, PadToLongest
from kubetune_trainer.training.scratch import train_tokenizer

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
    from kubetune_trainer.data.formats import parse_record

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
    from kubetune_trainer.data.dataprep import render_examples

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


@pytest.mark.parametrize("mask_from", ["ids", "offsets"])
@pytest.mark.parametrize("max_length", [1024, 96])
@pytest.mark.parametrize("train_on_inputs", [False, True])
def test_generation_matches_a_per_row_reference(alpaca: tuple[list[Any], Any], max_length: int,
                                                train_on_inputs: bool, mask_from: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from kubetune_trainer.data import dataprep
    from kubetune_trainer.data.answermask import token_byte_lengths

    examples, tokenizer = alpaca
    mixed = [*examples, TextExample("plain text about Rome"), TextExample("")]
    monkeypatch.setattr(dataprep, "_CHUNK", 64)  # several chunks, the last one short
    assert token_byte_lengths(tokenizer.backend_tokenizer) is not None  # byte-level BPE: ids suffice
    if mask_from == "offsets":
        monkeypatch.setattr(dataprep, "token_byte_lengths", lambda backend: None)
    data = tokenize_for_generation(mixed, tokenizer, max_length=max_length, train_on_inputs=train_on_inputs)
    expected = _reference(mixed, tokenizer, max_length, train_on_inputs=train_on_inputs)
    assert _rows(data) == expected
    assert len(data) + data.dropped == len(mixed)
    assert sum(bool(e.messages[0].content.count("\n\n")) for e in examples) > 50  # rows with an input
    if max_length == 96:  # the truncation paths were exercised: rows cut, rows left without an answer
        assert (data.lengths == 96).sum() > 30
        assert data.dropped > 0 or train_on_inputs


@pytest.mark.parametrize("mask_from", ["ids", "offsets"])
def test_left_truncation_and_the_backend_settings_are_kept(alpaca: tuple[list[Any], Any], mask_from: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from kubetune_trainer.data import dataprep

    examples, tokenizer = alpaca
    if mask_from == "offsets":
        monkeypatch.setattr(dataprep, "token_byte_lengths", lambda backend: None)
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
    from kubetune_trainer.data import dataprep

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
    from kubetune_trainer.data import dataprep

    examples, tokenizer = alpaca
    texts, spans = dataprep.render_examples(examples, tokenizer, train_on_inputs=False)
    fast = dataprep._encode(tokenizer, iter([(texts, spans)]), 96, masked=True)
    fallback = dataprep._encode_transformers(tokenizer, iter([(texts[:150], spans[:150]), (texts[150:], spans[150:])]),
                                             96, masked=True)
    assert fast.mask is not None and fallback.mask is not None
    assert np.array_equal(fast.ids, fallback.ids) and np.array_equal(fast.starts, fallback.starts)
    assert np.array_equal(fast.mask, fallback.mask) and 0 < fast.mask.sum() < len(fast.mask)


# --- the answer mask with other kinds of tokenizer ---------------------------------------------
# Byte-level BPE tokenizers that keep every byte and offset get their mask from the ids; the
# others from a few offset lookups per span (`tokens_starting_before`). These tokenizers make
# that hard in different ways: spaces trimmed off offsets leave tokens with empty offsets,
# which `char_to_token` never returns; a BERT pre-tokeniser drops whitespace, so span ends fall
# on characters no token covers; a Metaspace pre-tokeniser with a normaliser adds tokens
# sharing a start with the next one. The split-first byte-level one takes the ids path.

_TOKENIZER_KINDS = ["byte-level, trimmed offsets", "byte-level, split first", "wordpiece", "metaspace"]


def _tokenizer_of_kind(kind: str, texts: list[str]) -> Any:
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from kubetune_trainer.data.chattemplate import CHATML_TEMPLATE, IM_START

    special = ["<|pad|>", IM_START, IM_END]
    trainer: Any
    if kind == "byte-level, trimmed offsets":
        core = Tokenizer(models.BPE())
        core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        core.post_processor = processors.ByteLevel(trim_offsets=True)
        core.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=special, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    elif kind == "byte-level, split first":  # as Llama 3: a regex split, then bytes; offsets left untrimmed
        core = Tokenizer(models.BPE(ignore_merges=True))
        core.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"\p{L}+|\s+|[^\s\p{L}]+"), behavior="isolated"),
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
        core.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"{IM_START} $A", special_tokens=[(IM_START, 1)]),
        ])
        core.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=special, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    elif kind == "wordpiece":
        core = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        core.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
        core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        core.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=400, special_tokens=["[UNK]", *special], show_progress=False)
    else:
        core = Tokenizer(models.Unigram())
        core.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace("  ", " ")])
        core.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always")
        core.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=400, special_tokens=special, unk_token="<|pad|>",
                                          show_progress=False)
    core.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<|pad|>", eos_token=IM_END,
                                        additional_special_tokens=[IM_START])
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


@pytest.fixture(scope="module", params=_TOKENIZER_KINDS)
def tokenizer_kind(request: pytest.FixtureRequest, alpaca: tuple[list[Any], Any]) -> tuple[str, Any]:
    examples, _ = alpaca
    texts = [m.content for e in examples[:150] for m in e.messages]
    return request.param, _tokenizer_of_kind(request.param, texts)


class _Counting:
    """Wraps a function and counts its calls, keeping what it returned."""

    def __init__(self, function: Any) -> None:
        self.function, self.calls, self.results = function, 0, []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        self.results.append(self.function(*args, **kwargs))
        return self.results[-1]


@pytest.mark.parametrize("direction", ["right", "left"])
def test_token_boundaries_agree_with_a_scan_of_every_offset(alpaca: tuple[list[Any], Any],
                                                            tokenizer_kind: tuple[str, Any], direction: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """At every character position of every row (cut to 40 tokens or not), the few-lookup answer is
    the count of token starts before it, and the offsets it relies on never decrease."""
    import bisect

    from kubetune_trainer.data.answermask import tokens_starting_before
    from kubetune_trainer.data.dataprep import render_examples

    examples, _ = alpaca
    kind, tokenizer = tokenizer_kind
    texts, _ = render_examples([*examples[:40], *CHATS, TextExample("  spaced  out  "), TextExample("")], tokenizer,
                               train_on_inputs=False)
    backend = tokenizer.backend_tokenizer
    searches = _Counting(bisect.bisect_left)
    monkeypatch.setattr(bisect, "bisect_left", searches)
    uncovered = empty = shared = 0
    try:
        for max_length in (None, 40):
            if max_length is None:
                backend.no_truncation()
            else:
                backend.enable_truncation(max_length, direction=direction)
            for text, encoding in zip(texts, backend.encode_batch(texts, add_special_tokens=False), strict=True):
                token_starts = [start for start, _ in encoding.offsets]
                assert token_starts == sorted(token_starts)
                for position in range(len(text) + 2):
                    expected = sum(start < position for start in token_starts)
                    assert tokens_starting_before(encoding, position, len(encoding)) == expected, (kind, position)
                    uncovered += encoding.char_to_token(position) is None and position < len(text)
                empty += sum(start == end for start, end in encoding.offsets)
                shared += len(token_starts) - len(set(token_starts))
    finally:
        backend.no_truncation()
    # What makes each kind hard was there, and the binary search, not only the cheap lookup, was checked.
    if kind == "byte-level, trimmed offsets":
        assert empty > 0 and searches.calls > 0
    elif kind == "wordpiece":
        assert uncovered > 0 and searches.calls > 0
    elif kind == "metaspace":
        assert shared > 0 and searches.calls > 0
    else:  # characters split into several byte tokens, which share a start
        assert shared > 0


class _Offsets:
    """An Encoding's offset lookups (`char_to_token`, `token_to_chars`) over given offsets."""

    def __init__(self, offsets: list[tuple[int, int]]) -> None:
        self.offsets = offsets

    def char_to_token(self, position: int) -> int | None:
        return next((i for i, (start, end) in enumerate(self.offsets) if start <= position < end), None)

    def token_to_chars(self, token: int) -> tuple[int, int]:
        return self.offsets[token]


@pytest.mark.parametrize("offsets", [
    [(0, 2), (1, 4), (4, 5)],  # a token starting inside the one before (a character split between two)
    [(0, 3), (1, 2), (2, 6), (6, 6), (6, 8)],  # nested, then an empty token where the next one starts
    [(0, 1), (3, 5), (5, 5), (5, 5), (9, 12)],  # gaps no token covers, empty tokens
    [(2, 3), (2, 3), (2, 4), (7, 9)],  # tokens sharing a start; text before the first cut off
    [],
])
def test_token_boundaries_on_hand_made_offsets(offsets: list[tuple[int, int]]) -> None:
    from kubetune_trainer.data.answermask import tokens_starting_before

    encoding = _Offsets(offsets)
    for position in range(14):
        expected = sum(start < position for start, _ in offsets)
        assert tokens_starting_before(encoding, position, len(offsets)) == expected, position


@pytest.mark.parametrize("max_length", [1024, 96])
def test_generation_matches_the_reference_with_other_tokenizers(alpaca: tuple[list[Any], Any],
                                                                tokenizer_kind: tuple[str, Any], max_length: int,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from kubetune_trainer.data import dataprep
    from kubetune_trainer.data.answermask import token_byte_lengths

    examples, _ = alpaca
    kind, tokenizer = tokenizer_kind
    far = ChatExample((Message("user", "Straße? 東京 or Zürich"), Message("assistant", "Grüße 👋 from naïve Zoë")))
    mixed = [*examples, *CHATS, far, TextExample("plain text about Rome  "), TextExample("")]
    monkeypatch.setattr(dataprep, "_CHUNK", 64)
    from_ids = token_byte_lengths(tokenizer.backend_tokenizer) is not None
    assert from_ids == (kind == "byte-level, split first")
    data = tokenize_for_generation(mixed, tokenizer, max_length=max_length)
    assert _rows(data) == _reference(mixed, tokenizer, max_length)
    assert len(data) + data.dropped == len(mixed)
    if max_length == 96:  # some answers were cut off mid-way
        assert data.mask is not None
        assert ((data.lengths == 96) & data.mask[data.starts[1:] - 1]).sum() > 10


def test_which_tokenizers_get_their_mask_from_the_ids(alpaca: tuple[list[Any], Any]) -> None:
    """Only where every row's tokens are exactly its bytes: one setting off and the offsets are used."""
    from tokenizers import AddedToken, pre_tokenizers, processors

    from kubetune_trainer.data.answermask import token_byte_lengths

    _, tokenizer = alpaca
    backend = tokenizer.backend_tokenizer
    lengths = token_byte_lengths(backend)
    assert lengths is not None
    assert lengths[tokenizer.convert_tokens_to_ids(IM_END)] == len(IM_END)
    assert lengths[backend.encode("é", add_special_tokens=False).ids].sum() == 2
    changes = [
        ("pre_tokenizer", pre_tokenizers.ByteLevel(add_prefix_space=True)),  # adds a space
        ("pre_tokenizer", pre_tokenizers.Sequence([pre_tokenizers.Split(" ", behavior="removed"),
                                                   pre_tokenizers.ByteLevel(add_prefix_space=False)])),
        ("pre_tokenizer", pre_tokenizers.Whitespace()),
        ("post_processor", processors.ByteLevel(trim_offsets=True)),
    ]
    for attribute, value in changes:
        clone = type(backend).from_str(backend.to_str())
        setattr(clone, attribute, value)
        assert token_byte_lengths(clone) is None, (attribute, value)
    clone = type(backend).from_str(backend.to_str())
    clone.add_special_tokens([AddedToken("<|sep|>", lstrip=True)])  # swallows the whitespace before it
    assert token_byte_lengths(clone) is None


def test_ids_that_do_not_cover_their_text_fall_back_to_the_offsets(alpaca: tuple[list[Any], Any],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A tokenizer wrongly taken for one whose tokens are the text's bytes (this one adds a space
    before every text) is caught by the byte count of the rows, and those chunks use offsets."""
    from tokenizers import pre_tokenizers

    from kubetune_trainer.data import answermask, dataprep

    examples, tokenizer = alpaca
    spaced = tokenizer.__class__(tokenizer_object=type(tokenizer.backend_tokenizer).from_str(
        tokenizer.backend_tokenizer.to_str()), pad_token="<|pad|>", eos_token=IM_END)
    spaced.chat_template = tokenizer.chat_template
    spaced.backend_tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    byte_lengths = answermask.token_byte_lengths(tokenizer.backend_tokenizer)
    monkeypatch.setattr(dataprep, "token_byte_lengths", lambda backend: byte_lengths)
    refused = _Counting(answermask.bytes_mask)
    monkeypatch.setattr(dataprep, "bytes_mask", lambda *a, **k: refused(*a, **k))
    monkeypatch.setattr(dataprep, "_CHUNK", 64)
    data = tokenize_for_generation(examples, spaced, max_length=1024)
    assert _rows(data) == _reference(examples, spaced, 1024)
    assert refused.calls == 5 and refused.results.count(None) == 5


def test_the_collector_is_paused_inside_and_restored_after_an_error() -> None:
    import gc

    from kubetune_trainer.gcpause import gc_paused

    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        assert not gc.isenabled()
        raise RuntimeError("a defective row")
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()
