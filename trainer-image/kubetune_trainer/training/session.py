"""The Trainer session: base evaluation, training (resumed from the newest checkpoint), tuned evaluation.

Two guardrails live here. CUDA out of memory: the session is retried in this process with half
the per-device batch and twice the gradient accumulation (the same effective batch), resumed
from the newest checkpoint, down to a batch of 1. In-process rather than by exiting for the Job
to retry: the GPU stays held (a new Pod may wait for one), model and data stay loaded, and no
Pod retry of the Job's backoffLimit is spent; the batch in use is reported in every progress
line. Only with one process: in a distributed run the out-of-memory error hits one rank while the
others wait for it inside a training collective, where no agreement can reach them, so that rank
fails the run (OutOfMemory, with the batch to set) and torchrun and the Job stop the others alike.
Divergence: a callback stops training on a NaN/inf loss or a sustained spike, the session fails
with reason Diverged, and checkpoints written after the last good logged loss are set aside, so
the newest checkpoint (what a retry resumes from) is a good one; every rank's detector is fed
rank 0's logged loss, so all stop at the same step and agree on what to keep.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune.api.contract import FailureReason, TrainerConfig
from kubetune.api.hyperparameters import Hyperparameters
from kubetune.api.progress import Stage
from kubetune.api.tuningjob import Task
from kubetune_trainer.data.dataprep import TokenizedData
from kubetune_trainer.distributed import barrier, common_checkpoint, decide, ranks
from kubetune_trainer.errors import TrainerFailure
from kubetune_trainer.events import Reporter
from kubetune_trainer.stop import StopRequest
from kubetune_trainer.training.attempt import (
    ResumePoint,
    attempt_callbacks,
    diverged_failure,
    set_aside_bad_checkpoints,
    stopped_failure,
    tidy_torn_checkpoints,
)
from kubetune_trainer.training.callbacks import DivergenceCallback
from kubetune_trainer.training.collate import PackRows, PadToLongest
from kubetune_trainer.training.device import DevicePlan
from kubetune_trainer.training.divergence import DivergenceDetector
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
from kubetune_trainer.workdir import WorkDir


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


@dataclass(frozen=True)
class Batch:
    per_device: int
    accumulation: int

    def halved(self) -> Batch:
        return Batch(self.per_device // 2, self.accumulation * 2)


@dataclass(frozen=True)
class _OutOfMemory:
    """CUDA ran out of memory at `step`. A value, not the exception: the exception's traceback
    holds the failed step's tensors, and they must be freed before the retry."""

    step: int


@dataclass(frozen=True)
class _Session:
    """What stays the same across the out-of-memory retries of one run."""

    config: TrainerConfig
    work: WorkDir
    reporter: Reporter
    stop: StopRequest
    tokenizer: Any
    plan: DevicePlan
    train_data: TokenizedData
    eval_data: TokenizedData | None
    multi_label: bool
    attempt: int
    divergence: DivergenceCallback
    parallel: ParallelPlan


def run_training(config: TrainerConfig, work: WorkDir, reporter: Reporter, stop: StopRequest, *, model: Any,
                 tokenizer: Any, plan: DevicePlan, train_data: TokenizedData, eval_data: TokenizedData | None,
                 multi_label: bool, attempt: int = 1, parallel: ParallelPlan = ONE_PROCESS,
                 reload_model: Callable[[], Any] | None = None) -> TrainingOutcome:
    """`reload_model` gives a fresh base model: needed when an out-of-memory retry finds no checkpoint
    to restore the weights from after some optimizer steps ran."""
    hp = config.spec.hyperparameters
    detector = DivergenceDetector(config.spec.guardrails.divergence)
    session = _Session(config, work, reporter, stop, tokenizer, plan, train_data, eval_data, multi_label, attempt,
                       DivergenceCallback(detector, reporter), parallel)
    batch = Batch(hp.per_device_batch_size, hp.gradient_accumulation_steps)
    while True:
        ended = _train(session, model, batch)
        if isinstance(ended, TrainingOutcome):
            return ended
        world = ranks().world_size
        if not config.spec.guardrails.oom_retry or batch.per_device == 1:
            raise _out_of_memory_failure(hp, batch, processes=world)
        if world > 1:
            # Only this process saw the error; the others wait for it inside a collective (DDP's
            # gradient all-reduce, FSDP's all-gather) that it will never join, so no agreement on a
            # smaller batch can reach them. Exiting lets torchrun and the Job stop them all alike.
            reporter.log(f"CUDA out of memory at step {ended.step} on {ranks().describe()}: the in-process retry "
                         f"with a smaller batch is off for a run of {world} processes (the others are blocked in a "
                         "collective with this one); the run fails on every process")
            raise _out_of_memory_failure(hp, batch, processes=world)
        checkpoint = work.newest_checkpoint()
        smaller = batch.halved()
        reporter.log(
            f"CUDA out of memory at step {ended.step} with perDeviceBatchSize {batch.per_device}: retrying with "
            f"perDeviceBatchSize {smaller.per_device} and gradientAccumulationSteps {smaller.accumulation} "
            f"(the same effective batch) from {checkpoint.name if checkpoint else 'the start'}")
        batch = smaller
        if checkpoint is None and ended.step > 0:
            if reload_model is None:
                raise _out_of_memory_failure(hp, batch)
            model = None  # steps ran but none was saved: start again from the base weights
            _free_gpu_memory()
            model = reload_model()
        _free_gpu_memory()


def _train(session: _Session, model: Any, batch: Batch) -> TrainingOutcome | _OutOfMemory:
    import torch
    from transformers import PrinterCallback

    config, work, reporter, stop, parallel = session.config, session.work, session.reporter, session.stop, \
        session.parallel
    spec, hp = config.spec, config.spec.hyperparameters
    eval_data = session.eval_data
    classification = spec.task is Task.TEXT_CLASSIFICATION
    if hp.packing and classification:
        reporter.log("packing applies to text generation only: ignored for classification")
    packing = hp.packing and not classification
    if packing:
        collator: Any = PackRows()
        model.config.use_cache = False  # packed rows are only kept apart without the KV cache
    else:
        collator = PadToLongest(session.tokenizer.pad_token_id, token_labels=not classification)
    in_use = hp.model_copy(update={"per_device_batch_size": batch.per_device,
                                   "gradient_accumulation_steps": batch.accumulation})
    args = training_arguments(in_use, output_dir=work.checkpoints, plan=session.plan, has_eval=eval_data is not None,
                              classification=classification, parallel=parallel.training_arguments())
    me = ranks()
    if me.owns_folder(parallel.shared_work_dir):  # one rank per work folder tidies it, the others wait
        tidy_torn_checkpoints(work, reporter)
    barrier()
    point = ResumePoint(_resume_point(work, parallel))
    checkpoint = point.checkpoint
    # One TensorBoard log per run, not one per rank.
    callbacks = attempt_callbacks(reporter, stop, point, attempt=session.attempt, divergence=session.divergence,
                                  log_dir=work.runs if me.is_main else None)
    trainer = LengthGroupedTrainer(
        model=model, args=args, train_dataset=session.train_data, eval_dataset=eval_data, data_collator=collator,
        processing_class=session.tokenizer,
        compute_metrics=classification_accuracy(session.multi_label) if classification else None,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # its raw dicts would duplicate the progress lines
    # Evaluation always pads (packing changes nothing to the loss, and classification never packs).
    eval_collator = PadToLongest(session.tokenizer.pad_token_id, token_labels=not classification)

    # Rank 0's file decides: every rank must take part in the base evaluation, or none.
    base = decide(lambda: load_base_eval(work.base_eval)
                  if checkpoint is not None or work.base_eval.is_file() else None)
    out_of_memory_at: int | None = None
    try:
        if base is None:
            reporter.stage(Stage.EVALUATING, "evaluating the base model")
            base = _evaluate_with(trainer, eval_collator, eval_data)
            if ranks().is_main:
                save_base_eval(work.base_eval, base)
            reporter.log(f"base model: eval loss {_show(base.loss)}" + _accuracy(base))
        if checkpoint is not None:
            reporter.log(f"attempt {session.attempt}: resuming from {checkpoint.name}")
        reporter.stage(Stage.TRAINING, point.stage_message())
        output = trainer.train(resume_from_checkpoint=point.argument)
        if session.divergence.detector.diverged is not None:
            raise _diverged(work, session.divergence.detector, parallel)
        if stop.requested:
            raise stopped_failure(stop, trainer.state.global_step, work)
        reporter.stage(Stage.EVALUATING, "evaluating the tuned model")
        tuned = _evaluate_with(trainer, eval_collator, eval_data)
        reporter.log(f"tuned model: eval loss {_show(tuned.loss)} (base {_show(base.loss)})" + _accuracy(tuned))
    except torch.cuda.OutOfMemoryError:
        out_of_memory_at = trainer.state.global_step
    if out_of_memory_at is not None:  # out of the except block: the exception and its tensors are gone
        if trainer.model is not None:
            trainer.model.zero_grad(set_to_none=True)
        return _OutOfMemory(out_of_memory_at)
    assert base is not None
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


def _out_of_memory_failure(hp: Hyperparameters, batch: Batch, *, processes: int = 1) -> TrainerFailure:
    tried = "" if batch.per_device == hp.per_device_batch_size else \
        f" (retried down to perDeviceBatchSize {batch.per_device})"
    if processes > 1:
        smaller = batch.halved()
        advice = (f"a run of {processes} processes is not retried in place: set perDeviceBatchSize "
                  f"{smaller.per_device} and gradientAccumulationSteps {smaller.accumulation} (the same "
                  "effective batch), lower maxSeqLength, use QLoRA, or request larger GPUs"
                  if batch.per_device > 1 else
                  f"a run of {processes} processes is not retried in place: lower maxSeqLength, use QLoRA (or FSDP "
                  "for Full), or request larger GPUs")
    else:
        advice = "lower maxSeqLength, use QLoRA, or request a larger GPU"
    return TrainerFailure(
        FailureReason.OUT_OF_MEMORY,
        f"the GPU ran out of memory at perDeviceBatchSize {batch.per_device}{tried}, maxSeqLength "
        f"{hp.max_seq_length}: {advice}",
    )


def _diverged(work: WorkDir, detector: DivergenceDetector, parallel: ParallelPlan) -> TrainerFailure:
    """Every rank gets here at the same step (the detectors are fed rank 0's losses); one rank per
    folder sets the bad checkpoints aside, the others wait for it."""
    set_aside: list[Path] = []
    if ranks().owns_folder(parallel.shared_work_dir):
        set_aside = set_aside_bad_checkpoints(work, detector)
    barrier()
    return diverged_failure(work, detector, set_aside)


def _free_gpu_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


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
