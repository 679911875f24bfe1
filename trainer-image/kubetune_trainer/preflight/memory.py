"""A rough estimate of the GPU memory a run needs, from the model's shape and the run's settings.

Rough on purpose: it is meant to catch the run that cannot fit (an 8B model fully fine-tuned
on one 80 GB GPU), not to predict the allocator to the megabyte. The model, per GPU, for one
training process per GPU (on every node of the run): with DDP (and one process) every GPU
holds a whole replica, so more GPUs do not make a bigger model fit; with FSDP the weights,
gradients and optimizer state are sharded over all the GPUs of all the nodes (`shards`),
plus one layer gathered whole at a time, while activations and logits stay per GPU:

    weights      Full: 4 B/param (fp32 master weights, mixed-precision autocast);
                 LoRA: 2 B/param (bf16/fp16) or 4 (fp32); QLoRA: ~0.53 B/param for the
                 quantized layers (4-bit + quantization constants), 2 for embeddings and head;
                 plus 4 B per adapter parameter (fp32) for LoRA/QLoRA
    training     12 B per trainable parameter (fp32 gradient, two AdamW moments): every
                 parameter for Full, the adapters for LoRA/QLoRA
    activations  batch x sequence x layers x (10 x hidden + 4 x intermediate) values in the
                 compute precision (2 x intermediate for a plain, ungated MLP): what backward
                 keeps per token and layer without activation checkpointing, with fused
                 (flash/SDPA) attention
    logits       batch x sequence x vocabulary x (compute bytes + 8): the logits, their fp32
                 copy for the loss and its gradient (text generation only)
    overhead     1 GiB (CUDA context, kernels, workspace) + 5% allocator slack

The sequence is maxSeqLength: the worst case, since batches are padded to their longest row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from kubetune.api.hyperparameters import Precision
from kubetune.api.method import MethodSpec, TuningMethod

GIB: Final = 1024**3
_OVERHEAD_BYTES: Final = GIB
_SLACK: Final = 0.05
_TRAINING_BYTES_PER_PARAM: Final = 12  # fp32 gradient + AdamW first and second moments
_QUANTIZED_BYTES_PER_PARAM: Final = 0.53  # nf4: 4 bits + block constants (double quantization ~0.127 bits)
_GATED_ACTIVATIONS: Final = frozenset({"silu", "swish", "swiglu", "gelu_pytorch_tanh", "geglu"})
_ATTENTION_MODULES: Final = ("q_proj", "k_proj", "v_proj", "o_proj")
_MLP_MODULES: Final = ("gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a decoder-only transformer that decide its memory."""

    hidden: int
    layers: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    head_dim: int
    tied_embeddings: bool = False
    gated_mlp: bool = True
    experts: int = 1  # mixture of experts: experts per layer
    active_experts: int = 1  # experts each token goes through

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    @property
    def attention_params(self) -> int:
        q_out, kv_out = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return self.hidden * q_out * 2 + self.hidden * kv_out * 2

    @property
    def mlp_params(self) -> int:
        return (3 if self.gated_mlp else 2) * self.hidden * self.intermediate * self.experts

    @property
    def params(self) -> int:
        return self.embedding_params + self.layers * (self.attention_params + self.mlp_params)

    def lora_params(self, rank: int, target_modules: list[str]) -> int:
        """Adapter parameters: rank x (in + out) per adapted linear layer."""
        h, q_out, kv_out, inter = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, \
            self.intermediate
        sizes = {"q_proj": h + q_out, "k_proj": h + kv_out, "v_proj": h + kv_out, "o_proj": q_out + h,
                 "gate_proj": (h + inter) * self.experts if self.gated_mlp else 0,
                 "up_proj": (h + inter) * self.experts, "down_proj": (inter + h) * self.experts}
        known = [m for m in target_modules if m in sizes]
        # all-linear, or names this model does not use: count every linear layer (an upper bound).
        chosen = known if known and len(known) == len(target_modules) else list(sizes)
        return self.layers * rank * sum(sizes[m] for m in chosen)


def shape_from_config(config: Mapping[str, Any]) -> ModelShape | None:
    """The shape from a transformers config.json; None when it lacks the sizes (not a decoder we know)."""
    if isinstance(config.get("text_config"), Mapping):  # multimodal wrappers keep the LM's sizes here
        config = config["text_config"]

    def first(*names: str) -> Any:
        return next((config[n] for n in names if isinstance(config.get(n), int) and config[n] > 0), None)

    hidden = first("hidden_size", "n_embd", "d_model")
    layers = first("num_hidden_layers", "n_layer", "num_layers")
    vocab = first("vocab_size")
    heads = first("num_attention_heads", "n_head")
    if hidden is None or layers is None or vocab is None or heads is None:
        return None
    activation = str(config.get("hidden_act") or config.get("hidden_activation") or config.get("activation_function")
                     or "")
    model_type = str(config.get("model_type") or "")
    return ModelShape(
        hidden=hidden,
        layers=layers,
        intermediate=first("intermediate_size", "n_inner", "ffn_dim") or 4 * hidden,
        vocab=vocab,
        heads=heads,
        kv_heads=first("num_key_value_heads", "num_kv_heads") or heads,
        head_dim=first("head_dim") or hidden // heads,
        tied_embeddings=bool(config.get("tie_word_embeddings", False)),
        gated_mlp=activation in _GATED_ACTIVATIONS or model_type.startswith("gemma"),
        experts=first("num_local_experts", "num_experts") or 1,
        active_experts=first("num_experts_per_tok") or 1,
    )


@dataclass(frozen=True)
class MemoryNeed:
    """The estimate's parts, in bytes per GPU."""

    weights: int
    training_state: int
    activations: int
    logits: int

    @property
    def total(self) -> int:
        raw = self.weights + self.training_state + self.activations + self.logits
        return int(raw * (1 + _SLACK)) + _OVERHEAD_BYTES


@dataclass(frozen=True)
class RunShape:
    """What the run does with the model."""

    method: MethodSpec
    precision: Precision
    batch: int
    seq_len: int
    language_model_head: bool = True  # text generation; classification has a small head instead
    shards: int = 1  # FSDP: the GPUs (all nodes) weights and training state are split over; DDP: 1


def estimate(model: ModelShape, run: RunShape) -> MemoryNeed:
    compute_bytes = 4 if run.precision is Precision.FP32 else 2
    method = run.method.type
    if method is TuningMethod.FULL:
        weights = 4 * model.params
        trainable = model.params
    else:
        trainable = model.lora_params(run.method.lora.r, list(run.method.lora.target_modules))
        if method is TuningMethod.QLORA:
            layer_params = model.params - model.embedding_params
            weights = int(_QUANTIZED_BYTES_PER_PARAM * layer_params) + 2 * model.embedding_params
        else:
            weights = compute_bytes * model.params
        weights += 4 * trainable  # the adapters train in fp32
    tokens = run.batch * run.seq_len
    mlp_values = (4 if model.gated_mlp else 2) * model.intermediate * model.active_experts
    per_token_layer = 10 * model.hidden + mlp_values
    activations = tokens * model.layers * per_token_layer * compute_bytes
    logits = tokens * model.vocab * (compute_bytes + 8) if run.language_model_head else 0
    training_state = _TRAINING_BYTES_PER_PARAM * trainable
    if run.shards > 1:
        layer = model.attention_params + model.mlp_params
        gathered = weights * layer // max(1, model.params)  # the layer FSDP holds whole while it computes
        weights = -(-weights // run.shards) + gathered
        training_state = -(-training_state // run.shards)
    return MemoryNeed(weights=weights, training_state=training_state, activations=activations, logits=logits)


def largest_fitting_batch(model: ModelShape, run: RunShape, gpu_bytes: int) -> int:
    """The largest per-device batch whose estimate fits (0: not even a batch of 1)."""
    def fits(batch: int) -> bool:
        return estimate(model, _with_batch(run, batch)).total <= gpu_bytes

    if not fits(1):
        return 0
    low, high = 1, max(1, run.batch)
    while fits(high) and high < 1 << 16:
        low, high = high, high * 2
    if fits(high):
        return high
    while high - low > 1:  # fits(low) and not fits(high)
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def _with_batch(run: RunShape, batch: int) -> RunShape:
    return replace(run, batch=batch)


def gib(value: int) -> str:
    return f"{value / GIB:.1f} GiB"
