"""The final folder: adapter or weights, tokenizer, model card, TensorBoard runs, optional merged model.

Written to a staging folder and renamed to <work_dir>/final once complete, with the
finished-marker (metrics) inside: a crash half-way leaves no final/ that looks finished.
A LoRA adapter on a scratch base is useless without that random base, so the base is
copied to final/base/ (it is a few hundred KB).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kubetune.api.contract import TrainerConfig
from kubetune.api.distributed import effective_batch_size
from kubetune.api.method import Objective, TuningMethod
from kubetune.api.tuningjob import Task
from kubetune.api.tuningjobstatus import TrainingMetrics
from kubetune_trainer.distributed import ranks
from kubetune_trainer.events import Reporter
from kubetune_trainer.output.modelcard import CardSample, ModelCardInfo, render_model_card
from kubetune_trainer.training.device import DevicePlan
from kubetune_trainer.training.modelload import ResolvedModel
from kubetune_trainer.training.samples import Sample, for_result
from kubetune_trainer.workdir import FinishedModel, WorkDir, promote, write_finished

SCRATCH_BASE_IN_REPO = "base"
MERGED_IN_REPO = "merged"  # output/publish.py pushes <work_dir>/merged there


def save_final(config: TrainerConfig, work: WorkDir, reporter: Reporter, *, model: Any, tokenizer: Any,
               resolved: ResolvedModel, metrics: TrainingMetrics, labels: list[str],
               plan: DevicePlan, samples: Sequence[Sample] = (), state_dict: Any = None) -> FinishedModel:
    spec = config.spec
    adapter = spec.method.type is not TuningMethod.FULL
    staging = work.root / "final.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    # FSDP hands over the whole model gathered from its shards; otherwise the model has it all.
    model.save_pretrained(staging, **({"state_dict": state_dict} if state_dict is not None else {}))
    tokenizer.save_pretrained(staging)
    if labels:
        (staging / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
    if resolved.scratch and adapter:
        shutil.copytree(resolved.folder, staging / SCRATCH_BASE_IN_REPO)
    if work.runs.is_dir():
        shutil.copytree(work.runs, staging / "runs")
    merged = False
    if spec.output.merge:
        if adapter:
            del model
            _merge(config, work, staging, resolved, labels, plan)
            merged = True
            reporter.log(f"merged model written to {work.merged}")
        else:
            reporter.log("output.merge: a Full fine-tune has no adapter to merge; the model itself is published")
    card = render_model_card(_card_info(config, resolved, metrics, labels, adapter, merged=merged, samples=samples))
    (staging / "README.md").write_text(card, encoding="utf-8")
    if merged:
        merged_card = render_model_card(_card_info(config, resolved, metrics, labels, adapter=False, merged=True,
                                                   samples=samples))
        (work.merged / "README.md").write_text(merged_card, encoding="utf-8")
    finished = FinishedModel(metrics=metrics, base_model_revision=resolved.revision, merged=merged,
                             samples=tuple(for_result(samples)))
    write_finished(staging, finished)
    promote(staging, work.final)
    reporter.log(f"final model written to {work.final}")
    return finished


def _merge(config: TrainerConfig, work: WorkDir, adapter_folder: Path, resolved: ResolvedModel,
           labels: list[str], plan: DevicePlan) -> None:
    """Base (unquantized, in the training precision) + adapter, merged and saved to <work_dir>/merged."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    dtype = torch.bfloat16 if plan.bf16 else torch.float16 if plan.fp16 else torch.float32
    if config.spec.task is Task.TEXT_CLASSIFICATION:
        base = AutoModelForSequenceClassification.from_pretrained(
            resolved.folder, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)}, dtype=dtype,
            problem_type="multi_label_classification"
            if config.spec.classification and config.spec.classification.multi_label
            else "single_label_classification",
        )
    else:
        base = AutoModelForCausalLM.from_pretrained(resolved.folder, dtype=dtype)
    merged = PeftModel.from_pretrained(base, adapter_folder).merge_and_unload()
    staging = work.root / "merged.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    merged.save_pretrained(staging)
    AutoTokenizer.from_pretrained(adapter_folder).save_pretrained(staging)
    promote(staging, work.merged)


def _card_info(config: TrainerConfig, resolved: ResolvedModel, metrics: TrainingMetrics, labels: list[str],
               adapter: bool, *, merged: bool, samples: Sequence[Sample] = ()) -> ModelCardInfo:
    """The card of the adapter (or full model) at the repo root, or with adapter=False and merged=True,
    of the merged model in merged/."""
    spec = config.spec
    dpo = spec.method.objective is Objective.DPO
    hyperparameters: dict[str, object] = dict(spec.hyperparameters.to_wire())
    world = ranks().world_size
    hyperparameters.update({"worldSize": world, "effectiveBatchSize": effective_batch_size(
        spec.hyperparameters.per_device_batch_size, world, spec.hyperparameters.gradient_accumulation_steps)})
    if dpo:
        hyperparameters["dpoBeta"] = spec.method.dpo.beta
    if spec.method.type is not TuningMethod.FULL:
        lora = spec.method.lora
        hyperparameters.update({"loraR": lora.r, "loraAlpha": lora.alpha, "loraDropout": lora.dropout,
                                "targetModules": lora.target_modules})
    # Only names the Hub knows go in the metadata: Hub dataset repos; other sources by name.
    datasets: list[str] = []
    for index, entry in enumerate([*spec.datasets.train, *spec.datasets.validation]):
        if entry.source is not None and entry.source.hf is not None:
            datasets.append(entry.source.hf.repo)
        elif index < len(config.dataset_names):
            datasets.append(config.dataset_names[index])
        else:
            datasets.append(entry.describe())
    base_kind = "scratch" if resolved.scratch else "path" if spec.base_model.path is not None else "hub"
    merged_card = merged and not adapter
    return ModelCardInfo(
        base_model="a random scratch Llama" if resolved.scratch else resolved.name,
        base_kind=base_kind,
        base_subfolder=SCRATCH_BASE_IN_REPO if resolved.scratch and adapter else None,
        subfolder=MERGED_IN_REPO if merged_card else None,
        merged_subfolder=MERGED_IN_REPO if merged and adapter else None,
        base_model_revision=resolved.revision,
        datasets=list(dict.fromkeys(datasets)),
        method=spec.method.type.value + (" + DPO" if dpo else ""),
        task=spec.task.value,
        hyperparameters=hyperparameters,
        metrics={
            "eval_loss": metrics.eval_loss, "base_eval_loss": metrics.base_eval_loss,
            **({"accuracy": metrics.eval_accuracy, "base_accuracy": metrics.base_eval_accuracy}
               if spec.task is Task.TEXT_CLASSIFICATION else {}),
            **({"preference_accuracy": metrics.preference_accuracy,
                "base_preference_accuracy": metrics.base_preference_accuracy,
                "reward_margin": metrics.reward_margin, "reward_accuracy": metrics.reward_accuracy} if dpo else {}),
            "train_loss": metrics.train_loss, "trained_tokens": metrics.trained_tokens,
            "runtime_seconds": metrics.runtime_seconds, "steps": metrics.steps, "train_rows": metrics.train_rows,
        },
        repo=config.spec.output.repo,
        endpoint=config.spec.output.endpoint,
        adapter=adapter,
        labels=labels or None,
        samples=[CardSample(s.prompt, s.reference, s.base, s.tuned) for s in samples],
    )
