"""The training loop: transformers' Trainer on pre-tokenized rows with kubetune's collators.

Why Trainer and not trl's SFTTrainer: SFTTrainer re-does the data preparation kubetune does
faster itself (data/dataprep.py: batched encoding, vectorised masks; SFTTrainer's own took
60-90 s for 100k rows here), and its padding-free and packing paths were slower on CPU than
length-grouped batches. With rows already tokenized and labelled, what is left of SFTTrainer
is Trainer. Classification uses the same loop with a classification head.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from transformers import Trainer, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from kubetune.api.hyperparameters import Hyperparameters, LRScheduler
from kubetune_trainer.data.dataprep import TokenizedData
from kubetune_trainer.training.device import DevicePlan

_SCHEDULERS = {
    LRScheduler.LINEAR: "linear",
    LRScheduler.COSINE: "cosine",
    LRScheduler.CONSTANT: "constant",
    LRScheduler.CONSTANT_WITH_WARMUP: "constant_with_warmup",
}


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """LengthGroupedSampler whose order is a function of (seed, epoch) alone.

    Every rank of a distributed run draws the same global order, which accelerate then cuts
    into per-rank batches; a resumed run redraws the order of the epoch it resumes in.
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Any:
        import torch

        self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return super().__iter__()


class LengthGroupedTrainer(Trainer):
    """Trainer whose batches hold rows of similar length (lengths known up front, not re-measured)."""

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not isinstance(dataset, TokenizedData):
            return super()._get_train_sampler(train_dataset)
        # Groups span one optimizer step of all ranks, so N processes with batch B draw the rows
        # one process with batch N x B would.
        group = self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return EpochSeededLengthGroupedSampler(group, lengths=dataset.lengths.tolist(), seed=seed)


def training_arguments(hp: Hyperparameters, *, output_dir: Path, plan: DevicePlan, has_eval: bool,
                       classification: bool, parallel: dict[str, Any] | None = None) -> TrainingArguments:
    """Every hyperparameter of the spec, mapped onto TrainingArguments (`parallel`: DDP/FSDP settings)."""
    return TrainingArguments(**training_argument_values(hp, output_dir=output_dir, plan=plan, has_eval=has_eval,
                                                        classification=classification), **(parallel or {}))


def training_argument_values(hp: Hyperparameters, *, output_dir: Path, plan: DevicePlan, has_eval: bool,
                             classification: bool) -> dict[str, Any]:
    """The TrainingArguments keywords for the spec (trl's configs take them too)."""
    eval_steps = hp.eval_steps if has_eval else None
    return dict(
        output_dir=str(output_dir),
        num_train_epochs=hp.epochs,
        max_steps=hp.max_steps if hp.max_steps is not None else -1,
        learning_rate=hp.learning_rate,
        per_device_train_batch_size=hp.per_device_batch_size,
        per_device_eval_batch_size=hp.per_device_batch_size,
        gradient_accumulation_steps=hp.gradient_accumulation_steps,
        bf16=plan.bf16,
        fp16=plan.fp16,
        use_cpu=not plan.cuda,
        logging_steps=hp.logging_steps,
        save_strategy="steps",
        save_steps=hp.save_steps,
        save_total_limit=2,
        eval_strategy="steps" if eval_steps else "no",
        eval_steps=eval_steps,
        seed=hp.seed,
        data_seed=hp.seed,
        # A float below 1 is a share of the steps (TrainingArguments has no warmup_ratio in 5.x).
        warmup_steps=min(hp.warmup_ratio, 0.999),
        weight_decay=hp.weight_decay,
        lr_scheduler_type=_SCHEDULERS[hp.lr_scheduler],
        report_to="none",  # TensorBoard is added as a callback writing where kubetune wants it
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
        disable_tqdm=True,
        logging_nan_inf_filter=False,  # a NaN loss must show: it is what the divergence guardrail looks for
        dataloader_num_workers=0,
        prediction_loss_only=not classification,
        label_names=["labels"],
        save_only_model=False,
    )


@dataclass(frozen=True)
class Evaluation:
    loss: float | None
    accuracy: float | None


def evaluate(trainer: Trainer, data: TokenizedData | None) -> Evaluation:
    if data is None or len(data) == 0:
        return Evaluation(None, None)
    found = trainer.evaluate(eval_dataset=data, metric_key_prefix="eval")  # type: ignore[arg-type]
    loss = found.get("eval_loss")
    accuracy = found.get("eval_accuracy")
    return Evaluation(float(loss) if loss is not None else None, float(accuracy) if accuracy is not None else None)


def classification_accuracy(multi_label: bool) -> Any:
    """compute_metrics: accuracy (multi-label: a row counts when every label is right)."""
    def compute(prediction: Any) -> dict[str, float]:
        logits = np.asarray(prediction.predictions)
        targets = np.asarray(prediction.label_ids)
        correct = ((logits > 0) == (targets > 0.5)).all(axis=1) if multi_label else logits.argmax(axis=-1) == targets
        return {"accuracy": float(correct.mean())}
    return compute


def save_base_eval(path: Path, evaluation: Evaluation) -> None:
    path.write_text(json.dumps({"loss": evaluation.loss, "accuracy": evaluation.accuracy}), encoding="utf-8")


def load_base_eval(path: Path) -> Evaluation | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Evaluation(data.get("loss"), data.get("accuracy"))
    except (OSError, ValueError):
        return None
