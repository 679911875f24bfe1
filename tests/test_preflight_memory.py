"""The GPU-memory estimate against known figures, and the token rules read from whoami."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from kubetune.api.hyperparameters import Precision
from kubetune.api.method import MethodSpec
from kubetune_trainer.preflight.identity import Identity
from kubetune_trainer.preflight.memory import (
    GIB,
    ModelShape,
    RunShape,
    estimate,
    largest_fitting_batch,
    shape_from_config,
)
from support.modelconfigs import GPT2, LLAMA_2_7B, LLAMA_3_8B, MISTRAL_7B

GPU_80G = 80 * GIB


def shape(config: dict[str, Any]) -> ModelShape:
    found = shape_from_config(config)
    assert found is not None
    return found


def run(method: str, batch: int = 1, seq_len: int = 2048, precision: Precision = Precision.BF16) -> RunShape:
    spec = MethodSpec.model_validate({"type": method, **({"quantization": {"bits": 4}} if method == "QLoRA" else {})})
    return RunShape(method=spec, precision=precision, batch=batch, seq_len=seq_len)


@pytest.mark.parametrize(("config", "billions"), [(LLAMA_3_8B, 8.03), (LLAMA_2_7B, 6.74), (MISTRAL_7B, 7.24),
                                                  (GPT2, 0.124)])
def test_parameter_counts_match_the_published_sizes(config: dict[str, Any], billions: float) -> None:
    assert shape(config).params / 1e9 == pytest.approx(billions, rel=0.01)


def test_an_8b_model_fully_fine_tuned_does_not_fit_one_80gb_gpu_but_lora_does() -> None:
    model = shape(LLAMA_3_8B)
    full = estimate(model, run("Full"))
    assert full.weights + full.training_state == 16 * model.params  # fp32 weights, gradients, two AdamW moments
    assert full.total > GPU_80G
    assert largest_fitting_batch(model, run("Full"), GPU_80G) == 0

    lora = estimate(model, run("LoRA", batch=2))
    assert lora.weights == 2 * model.params + 4 * model.lora_params(16, ["all-linear"])  # bf16 base, fp32 adapters
    assert lora.training_state < 1 * GIB  # adapters only: ~42M parameters at r=16
    assert lora.total < GPU_80G
    # ... but not at the default batch of 8 x 2048 tokens without activation checkpointing.
    assert estimate(model, run("LoRA", batch=8)).total > GPU_80G
    assert 2 <= largest_fitting_batch(model, run("LoRA", batch=8), GPU_80G) < 8


def test_fsdp_shards_weights_and_training_state_over_every_gpu_of_every_node() -> None:
    model = shape(LLAMA_3_8B)
    whole = estimate(model, run("Full"))
    sharded = estimate(model, replace(run("Full"), shards=16))  # 2 nodes x 8 GPUs
    layer = model.attention_params + model.mlp_params
    assert sharded.training_state == -(-whole.training_state // 16)
    # A sixteenth of the weights, plus the one layer FSDP gathers whole while it computes.
    assert sharded.weights == -(-whole.weights // 16) + whole.weights * layer // model.params
    assert (sharded.activations, sharded.logits) == (whole.activations, whole.logits), "per GPU either way"
    assert whole.total > GPU_80G > sharded.total
    assert largest_fitting_batch(model, replace(run("Full"), shards=16), GPU_80G) >= 1
    assert estimate(model, replace(run("LoRA"), shards=1)) == estimate(model, run("LoRA")), "DDP: a whole copy"


def test_qlora_needs_less_than_lora_and_fp32_more() -> None:
    model = shape(MISTRAL_7B)
    lora = estimate(model, run("LoRA"))
    assert estimate(model, run("QLoRA")).weights < lora.weights / 3
    assert estimate(model, run("LoRA", precision=Precision.FP32)).total > lora.total


def test_memory_grows_with_batch_and_sequence() -> None:
    model = shape(LLAMA_2_7B)
    one = estimate(model, run("LoRA", batch=1, seq_len=1024))
    assert estimate(model, run("LoRA", batch=2, seq_len=1024)).activations == 2 * one.activations
    assert estimate(model, run("LoRA", batch=1, seq_len=2048)).logits == 2 * one.logits
    fitting = largest_fitting_batch(model, run("LoRA", batch=4), 40 * GIB)
    assert estimate(model, run("LoRA", batch=fitting)).total <= 40 * GIB
    assert estimate(model, run("LoRA", batch=fitting + 1)).total > 40 * GIB


def test_named_target_modules_count_only_those_layers() -> None:
    model = shape(LLAMA_3_8B)
    every = model.lora_params(16, ["all-linear"])
    attention = model.lora_params(16, ["q_proj", "v_proj"])
    assert every == pytest.approx(41.9e6, rel=0.01)
    assert attention == 32 * 16 * ((4096 + 4096) + (4096 + 1024))
    assert model.lora_params(16, ["query_key_value"]) == every  # names it does not know: every layer, an upper bound


def test_configs_without_the_sizes_or_nested_text_configs() -> None:
    assert shape_from_config({"model_type": "vit", "image_size": 224}) is None
    nested = shape_from_config({"model_type": "llava", "text_config": LLAMA_2_7B})
    assert nested is not None and nested.params == shape(LLAMA_2_7B).params
    moe = shape({**MISTRAL_7B, "num_local_experts": 8, "num_experts_per_tok": 2})
    assert moe.params / 1e9 == pytest.approx(46.7, rel=0.01)  # Mixtral 8x7B
    assert not shape(GPT2).gated_mlp and shape(LLAMA_2_7B).gated_mlp


def whoami(role: str, *, orgs: dict[str, str] | None = None, scoped: dict[str, list[str]] | None = None,
           gated: bool = True) -> Identity:
    access: dict[str, Any] = {"role": role}
    if scoped is not None:
        access["fineGrained"] = {"canReadGatedRepos": gated, "global": [], "scoped": [
            {"entity": {"type": "model" if "/" in name else "user", "name": name}, "permissions": permissions}
            for name, permissions in scoped.items()]}
    return Identity.from_whoami({"name": "ann", "orgs": [{"name": o, "roleInOrg": r} for o, r in (orgs or {}).items()],
                                 "auth": {"type": "access_token", "accessToken": access}})


def test_who_may_write_where() -> None:
    writer = whoami("write", orgs={"team": "write", "guests": "read"})
    assert writer.cannot_write("ann/model") is None and writer.cannot_write("model") is None
    assert writer.cannot_write("team/model") is None
    assert "read member of guests" in (writer.cannot_write("guests/model") or "")
    assert "not a member of the org strangers" in (writer.cannot_write("strangers/model") or "")
    assert "read token" in (whoami("read").cannot_write("ann/model") or "")

    fine = whoami("fineGrained", orgs={"team": "admin"}, scoped={"ann": ["repo.content.read"],
                                                                  "team/out": ["repo.write"]})
    assert fine.cannot_write("team/out") is None
    assert "no repo.write permission on ann/model" in (fine.cannot_write("model") or "")
    assert "no repo.write permission on team/other" in (fine.cannot_write("team/other") or "")
    assert not whoami("fineGrained", scoped={}, gated=False).can_read_gated
    assert whoami("custom-role").cannot_write("x/y") is None  # a self-hosted hub's roles are not judged
