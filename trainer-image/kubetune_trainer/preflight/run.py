"""The preflight: every check a run can fail on that needs no GPU, in the order a person fixes them.

token -> base model (readable at its revision, not gated) -> output repo (writable) -> data
(reachable) -> GPU memory (a rough estimate; a warning only). Checks that need a token the
Hub refused are skipped rather than reported twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from kubetune.api.basemodel import ScratchModel
from kubetune.api.common import SecretKeyRef, quantity_bytes
from kubetune.api.contract import FailureReason, MemoryEstimate, PreflightReport, TrainerConfig
from kubetune.api.distributed import ParallelStrategy, world_size
from kubetune.api.guardrails import PinnedDataset, source_name
from kubetune.api.tuningjob import Task
from kubetune_trainer.data.sources import SourceError, probe_source
from kubetune_trainer.preflight.findings import Findings
from kubetune_trainer.preflight.hubchecks import check_base_model, check_output, check_token
from kubetune_trainer.preflight.identity import Identity
from kubetune_trainer.preflight.memory import (
    ModelShape,
    RunShape,
    estimate,
    gib,
    largest_fitting_batch,
    shape_from_config,
)
from kubetune_trainer.training.parallel import planned_strategy


def run_preflight(config: TrainerConfig, *, hf_token: str | None, data_token: str | None) -> PreflightReport:
    spec = config.spec
    findings = Findings(secrets=[hf_token, data_token])
    secret = _secret_name(spec.hf_token_secret_ref)
    identities: dict[str | None, Identity | None] = {}

    def identity_at(endpoint: str | None) -> Identity | None:
        """whoami once per hub; None when there is no token or the hub refused it."""
        if hf_token is None:
            return None
        if endpoint not in identities:
            identities[endpoint] = check_token(endpoint, hf_token, secret, findings)
        return identities[endpoint]

    def token_refused(endpoint: str | None) -> bool:
        return hf_token is not None and identity_at(endpoint) is None

    base_revision: str | None = None
    model_config: Mapping[str, Any] | None = None
    model = spec.base_model
    if model.repo is not None and not token_refused(model.endpoint):
        found = check_base_model(model, hf_token, identity_at(model.endpoint), findings)
        base_revision, model_config = found.revision, found.config
    elif model.path is not None:
        model_config = _local_model_config(model.path, config, findings)

    if spec.output.repo is not None and not token_refused(spec.output.endpoint):
        check_output(spec.output, hf_token, identity_at(spec.output.endpoint), secret, findings)

    datasets = _check_data(config, data_token or hf_token, findings)
    shape = _scratch_shape(model.scratch) if model.scratch is not None else (
        shape_from_config(model_config) if model_config is not None else None)
    memory = _check_memory(config, shape, findings) if shape is not None else None
    return PreflightReport(
        outcome="Failed" if findings.failed else "Passed",
        retryable=findings.retryable if findings.failed else None,
        issues=findings.issues[:16],
        checked=findings.checked,
        base_model_revision=base_revision,
        datasets=datasets,
        memory=memory,
    )


def _secret_name(ref: SecretKeyRef | None) -> str:
    return f"Secret {ref.name} (key {ref.key})" if ref is not None else "spec.hfTokenSecretRef"


def _local_model_config(path: str, config: TrainerConfig, findings: Findings) -> Mapping[str, Any] | None:
    """config.json of a model on a mounted volume; an error when the folder holds no model."""
    findings.check("baseModel")
    if path.startswith("pvc:"):
        claim, _, inner = path[len("pvc:"):].strip().lstrip("/").partition("/")
        try:
            folder = Path(config.mounts.path_of_pvc(claim, inner))
        except KeyError as error:
            findings.error(FailureReason.INVALID_CONFIG, f"baseModel.path {path}: {error.args[0]}")
            return None
    else:
        folder = Path(PurePosixPath(path))
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except OSError:
        findings.error(FailureReason.MODEL_NOT_FOUND, f"baseModel.path {path}: no model (config.json) in {folder}: "
                       "copy the model folder there or fix the path")
        return None
    except ValueError as error:
        findings.error(FailureReason.MODEL_NOT_FOUND, f"baseModel.path {path}: config.json is not JSON ({error})")
        return None
    return data if isinstance(data, dict) else None


def _check_data(config: TrainerConfig, token: str | None, findings: Findings) -> list[PinnedDataset]:
    """Each data source answers; Hub sources are pinned to the commit their revision names now."""
    pinned: list[PinnedDataset] = []
    seen: set[str] = set()
    groups = (("train", config.spec.datasets.train), ("validation", config.spec.datasets.validation))
    for group, entries in groups:
        for index, entry in enumerate(entries):
            if entry.source is None:
                continue  # a Dataset reference the operator did not resolve: the trainer reports it
            key = entry.source.model_dump_json()
            if key in seen:
                continue
            seen.add(key)
            findings.check("data")
            where = f"datasets.{group}[{index}] ({entry.source.describe()})"
            try:
                revision = probe_source(entry.source, mounts=config.mounts, token=token,
                                        allow_private_urls=config.allow_private_urls)
            except SourceError as error:
                findings.error(FailureReason.DATA_UNREACHABLE, f"{where}: {error.message}",
                               transient=error.reason is FailureReason.UNREACHABLE)
                continue
            if entry.source.hf is not None:
                pinned.append(PinnedDataset(name=source_name(entry.source), revision=revision))
    return pinned


def _scratch_shape(scratch: ScratchModel) -> ModelShape:
    return ModelShape(hidden=scratch.hidden_size, layers=scratch.num_layers, intermediate=scratch.intermediate_size,
                      vocab=scratch.vocab_size, heads=scratch.num_heads, kv_heads=scratch.num_key_value_heads,
                      head_dim=scratch.hidden_size // scratch.num_heads, tied_embeddings=True)


def _check_memory(config: TrainerConfig, shape: ModelShape, findings: Findings) -> MemoryEstimate:
    spec, hp = config.spec, config.spec.hyperparameters
    gpu_bytes = quantity_bytes(spec.resources.gpu_memory) if spec.resources.gpu_memory else None
    layout = _layout(config, shape, gpu_bytes)
    run = RunShape(method=spec.method, precision=hp.precision, batch=hp.per_device_batch_size,
                   seq_len=hp.max_seq_length, language_model_head=spec.task is Task.TEXT_GENERATION,
                   shards=layout.shards)
    need = estimate(shape, run)
    findings.check("memory")
    if spec.resources.gpus == 0 or gpu_bytes is None:
        return MemoryEstimate(bytes_per_gpu=need.total, gpu_bytes=gpu_bytes)
    fits = need.total <= gpu_bytes
    largest = largest_fitting_batch(shape, run, gpu_bytes)
    if not fits:
        what = (f"a rough estimate for {spec.method.type.value} of a {shape.params / 1e9:.2f}B-parameter model at "
                f"perDeviceBatchSize {hp.per_device_batch_size} and maxSeqLength {hp.max_seq_length} is "
                f"{gib(need.total)} per GPU{layout.describe()} (weights {gib(need.weights)}, optimizer and gradients "
                f"{gib(need.training_state)}, activations {gib(need.activations + need.logits)}); one GPU has "
                f"{gib(gpu_bytes)}")
        if largest > 0:
            retry = "the trainer halves the batch itself, at the cost of a failed attempt" if layout.world == 1 \
                else "a run of several processes fails rather than retry with a smaller batch"
            advice = (f"perDeviceBatchSize {largest} is estimated to fit: lower it and raise "
                      f"gradientAccumulationSteps to keep the batch (on CUDA out-of-memory {retry})")
        else:
            advice = "not even a batch of 1 is estimated to fit: use LoRA or QLoRA, a shorter maxSeqLength, or a " \
                     "GPU with more memory (resources.gpuMemory tells the estimate its size)"
        sharded = replace(run, shards=layout.world)
        if layout.world > 1 and layout.shards == 1 and estimate(shape, sharded).total <= gpu_bytes:
            advice += f"; distributed.strategy FSDP (sharded over the {layout.world} GPUs) is estimated to fit"
        findings.warning(FailureReason.WONT_FIT, f"{what}: {advice}")
    return MemoryEstimate(bytes_per_gpu=need.total, gpu_bytes=gpu_bytes, fits=fits, largest_fitting_batch=largest)


@dataclass(frozen=True)
class _Layout:
    """How the run's processes hold the model: `world` GPUs on `nodes` nodes, sharded over `shards`."""

    world: int
    nodes: int
    strategy: ParallelStrategy | None  # None: one process
    shards: int

    def describe(self) -> str:
        if self.strategy is None:
            return ""
        where = f" on {self.nodes} nodes" if self.nodes > 1 else ""
        if self.shards > 1:
            return f" (FSDP: sharded over {self.world} GPUs{where})"
        return f" (DDP over {self.world} GPUs{where}: each holds a whole copy)"


def _layout(config: TrainerConfig, shape: ModelShape, gpu_bytes: int | None) -> _Layout:
    """DDP or FSDP as the trainer will choose it (trainer/parallel.py's rule, from the spec's sizes)."""
    spec = config.spec
    resources = spec.resources
    world = world_size(resources.nodes, resources.gpus)
    if world == 1 or resources.gpus == 0:
        # Without GPUs FSDP falls back to DDP (and there is no GPU to fit anyway).
        return _Layout(world, resources.nodes, ParallelStrategy.DDP if world > 1 else None, 1)
    strategy, _ = planned_strategy(spec.distributed.strategy, spec.method.type, shape.params, gpu_bytes)
    return _Layout(world, resources.nodes, strategy, world if strategy is ParallelStrategy.FSDP else 1)
