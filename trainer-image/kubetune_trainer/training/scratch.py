"""The `scratch` base model: a tiny random Llama with a byte-level BPE tokenizer trained on the data.

For smoke tests and the local demo, where no Hub is reachable. The tokenizer knows the
ChatML markers as special tokens and carries the ChatML template, so the saved folder is a
complete base model that `from_pretrained` loads like any other.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kubetune.api.basemodel import ScratchModel
from kubetune_trainer.data.chattemplate import CHATML_TEMPLATE, IM_END, IM_START

PAD = "<|pad|>"
SPECIAL_TOKENS = [PAD, IM_START, IM_END]


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Any:
    """A PreTrainedTokenizerFast trained on `texts` (byte-level BPE: every string is encodable)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD, eos_token=IM_END, bos_token=None, unk_token=None,
        additional_special_tokens=[IM_START],
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_scratch_model(spec: ScratchModel, texts: Iterable[str], folder: Path, *, seed: int) -> Path:
    """Train the tokenizer, initialise the model with `seed`, save both to `folder` and return it.

    Saved as a causal LM; a classification run loads it with a fresh classification head.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = train_tokenizer(texts, spec.vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
