"""The Trainer session: base evaluation, training (resumed from the newest checkpoint), tuned evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune.api.contract import FailureReason, TrainerConfig
from kubetune.api.progress import Stage
from kubetune.api.tuningjob import Task
from kubetune_trainer.data.dataprep import TokenizedData
from kubetune_trainer.distributed import barrier, common_checkpoint, decide, ranks
from kubetune_trainer.errors import TrainerFailure
from kubetune_trainer.events import Reporter
from kubetune_trainer.stop import StopRequest
from kubetune_trainer.training.callbacks import CheckpointMarker, ProgressCallback
from kubetune_trainer.training.collate import PackRows, PadToLongest
from kubetune_trainer.training.device import DevicePlan
from kubetune_trainer.training.parallel import ONE_PROCESS, ParallelPlan
from kubetune_trainer.training.trainloop import (
    Evaluation,
    LengthGroupedTrainer,
    classification_accuracy,
    evaluate,
    load_base_eval,
    save_base_eval,
    training_arguments,
)
from kubetune_trainer.workdir import WorkDir, checkpoint_step


@dataclass
class TrainingOutcome:
    model: Any
    train_loss: float | None
    trained_tokens: int
    steps: int
    runtime_seconds: float
    base: Evaluation
    tuned: Evaluation
    state_dict: Any = None  # FSDP: the whole model gathered from its shards (rank 0); else None


def run_training(config: TrainerConfig, work: WorkDir, reporter: Reporter, stop: StopRequest, *, model: Any,
                 tokenizer: Any, plan: DevicePlan, train_data: TokenizedData, eval_data: TokenizedData | None,
                 multi_label: bool, attempt: int = 1, parallel: ParallelPlan = ONE_PROCESS) -> TrainingOutcome:
    import torch
    from torch.utils.tensorboard import SummaryWriter
    from transformers import PrinterCallback
    from transformers.integrations import TensorBoardCallback

    spec, hp = config.spec, config.spec.hyperparameters
    classification = spec.task is Task.TEXT_CLASSIFICATION
    if hp.packing and classification:
        reporter.log("packing applies to text generation only: ignored for classification")
    packing = hp.packing and not classification
    if packing:
        collator: Any = PackRows()
        model.config.use_cache = False  # packed rows are only kept apart without the KV cache
    else:
        collator = PadToLongest(tokenizer.pad_token_id, token_labels=not classification)
    args = training_arguments(hp, output_dir=work.checkpoints, plan=plan, has_eval=eval_data is not None,
                              classification=classification, parallel=parallel.training_arguments())
    me = ranks()
    if me.is_local_main:  # one rank per folder tidies it: a shared volume tolerates the others' attempt
        torn = work.discard_incomplete_checkpoints()
        if torn:
            reporter.log(f"removed {', '.join(torn)}: the previous attempt was stopped while saving it")
    barrier()
    checkpoint = _resume_point(work, parallel)
    resumed_from = checkpoint_step(checkpoint) if checkpoint is not None else None
    callbacks: list[Any] = [ProgressCallback(reporter, stop, resumed_from_step=resumed_from, attempt=attempt),
                            CheckpointMarker()]
    if me.is_main:  # one TensorBoard log per run, not one per rank
        work.runs.mkdir(parents=True, exist_ok=True)
        callbacks.append(TensorBoardCallback(SummaryWriter(log_dir=str(work.runs))))
    trainer = LengthGroupedTrainer(
        model=model, args=args, train_dataset=train_data, eval_dataset=eval_data, data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=classification_accuracy(multi_label) if classification else None,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # its raw dicts would duplicate the progress lines
    # Evaluation always pads (packing changes nothing to the loss, and classification never packs).
    eval_collator = PadToLongest(tokenizer.pad_token_id, token_labels=not classification)

    # Rank 0's file decides: every rank must take part in the base evaluation, or none.
    base = decide(lambda: load_base_eval(work.base_eval) if checkpoint is not None else None)
    try:
        if base is None:
            reporter.stage(Stage.EVALUATING, "evaluating the base model")
            base = _evaluate_with(trainer, eval_collator, eval_data)
            if ranks().is_main:
                save_base_eval(work.base_eval, base)
            reporter.log(f"base model: eval loss {_show(base.loss)}" + _accuracy(base))
        if checkpoint is not None:
            reporter.log(f"attempt {attempt}: resuming from {checkpoint.name}")
        reporter.stage(Stage.TRAINING, f"resuming from {checkpoint.name} (checkpoint step {resumed_from})"
                       if checkpoint is not None else "training from step 0")
        output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        if stop.requested:
            raise TrainerFailure(
                FailureReason.INTERRUPTED,
                f"stopped by {stop.requested} at step {trainer.state.global_step}; a checkpoint is saved in "
                f"{work.checkpoints}: a new attempt resumes from it",
            )
        reporter.stage(Stage.EVALUATING, "evaluating the tuned model")
        tuned = _evaluate_with(trainer, eval_collator, eval_data)
        reporter.log(f"tuned model: eval loss {_show(tuned.loss)} (base {_show(base.loss)})" + _accuracy(tuned))
    except torch.cuda.OutOfMemoryError:
        raise TrainerFailure(
            FailureReason.OUT_OF_MEMORY,
            f"the GPU ran out of memory (perDeviceBatchSize {hp.per_device_batch_size}, maxSeqLength "
            f"{hp.max_seq_length}): lower them (raise gradientAccumulationSteps to keep the batch), use QLoRA, "
            "or request a larger GPU",
        ) from None
    metrics = output.metrics or {}
    # Every rank takes part in gathering the shards; rank 0 ends up with the whole model.
    state_dict = trainer.accelerator.get_state_dict(trainer.model) if parallel.fsdp else None
    return TrainingOutcome(
        model=trainer.model, train_loss=_finite(output.training_loss),
        trained_tokens=trainer.state.num_input_tokens_seen,
        steps=trainer.state.global_step, runtime_seconds=float(metrics.get("train_runtime", 0.0)),
        base=base, tuned=tuned, state_dict=state_dict,
    )


def _resume_point(work: WorkDir, parallel: ParallelPlan) -> Path | None:
    """The newest checkpoint every rank has (one process: the newest complete one), or None."""
    found = work.complete_checkpoints()
    if parallel.fsdp and not parallel.shared_work_dir:
        # Sharded checkpoints need every shard and rank 0's metadata in one folder.
        found = {}
    step = common_checkpoint(sorted(found))
    return found.get(step) if step is not None else None


def _evaluate_with(trainer: Any, collator: Any, data: TokenizedData | None) -> Evaluation:
    training_collator = trainer.data_collator
    trainer.data_collator = collator
    try:
        return evaluate(trainer, data)
    finally:
        trainer.data_collator = training_collator


def _finite(value: float | None) -> float | None:
    if value is None or value != value:
        return None
    return float(value)


def _show(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _accuracy(evaluation: Evaluation) -> str:
    return "" if evaluation.accuracy is None else f", accuracy {evaluation.accuracy:.3f}"
