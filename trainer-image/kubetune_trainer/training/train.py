"""The training stage: the datasets read and prepared, the base model loaded, trained and evaluated.

pipeline.py runs it only when the run folder's final/ holds no finished model (a re-run after
a failed push must not train again) and hands the TrainedModel to output/finalize.py. A run
that finds checkpoints resumes from the newest complete one, so a restarted Pod (the same run
folder, runfolder.py) continues the step count.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetune.api.contract import FailureReason, TrainerConfig
from kubetune.api.dataset import DatasetFormat
from kubetune.api.distributed import effective_batch_size
from kubetune.api.method import Objective, TuningMethod
from kubetune.api.progress import Stage
from kubetune.api.tuningjob import Task
from kubetune.api.tuningjobstatus import TrainingMetrics
from kubetune_trainer import distributed
from kubetune_trainer.data.datamix import DataMix, load_mix
from kubetune_trainer.data.dataprep import tokenize_for_classification, tokenize_for_generation
from kubetune_trainer.data.rows import ChatExample, ClassificationExample, Example, PreferenceExample
from kubetune_trainer.errors import TrainerFailure
from kubetune_trainer.events import Reporter
from kubetune_trainer.stop import StopRequest
from kubetune_trainer.training.device import DevicePlan, plan_device
from kubetune_trainer.training.dpo import BASE_DPO_LOSS, run_dpo
from kubetune_trainer.training.modelload import (
    ResolvedModel,
    load_model,
    load_tokenizer,
    lora_config,
    resolve_base_model,
)
from kubetune_trainer.training.parallel import ONE_PROCESS, ParallelPlan, choose_parallelism, gpu_memory_bytes
from kubetune_trainer.training.samples import (
    BASE_ANSWERS_FILE,
    SAMPLES_FILE,
    Sample,
    SamplePrompt,
    base_answers,
    build_samples,
    generate_answers,
    sample_prompts,
    write_samples,
)
from kubetune_trainer.training.session import run_training
from kubetune_trainer.workdir import WorkDir


@dataclass(frozen=True)
class Tokens:
    hf: str | None  # base model and pushing
    data: str | None  # private data (falls back to hf)


@dataclass(frozen=True)
class TrainedModel:
    """What the output stage needs to write the final folder."""

    model: Any
    tokenizer: Any
    resolved: ResolvedModel
    metrics: TrainingMetrics
    labels: list[str]  # classification labels, in head order; empty for text generation
    plan: DevicePlan
    samples: list[Sample] = field(default_factory=list)  # base vs tuned answers to validation prompts
    state_dict: Any = None  # FSDP: the whole model gathered from its shards; else the model has it all


def train_model(config: TrainerConfig, work: WorkDir, reporter: Reporter, stop: StopRequest,
                tokens: Tokens, *, attempt: int = 1) -> TrainedModel | None:
    """The trained model on rank 0; None on the other ranks of a distributed run (rank 0 writes final/)."""
    _quiet_libraries()
    spec, hp = config.spec, config.spec.hyperparameters
    classification = spec.task is Task.TEXT_CLASSIFICATION
    multi_label = bool(spec.classification and spec.classification.multi_label)
    declared = list(spec.classification.labels) if spec.classification else []
    me = distributed.ranks()
    if me.distributed and spec.method.objective is Objective.DPO:
        raise TrainerFailure(FailureReason.INVALID_CONFIG,
                             f"method.objective dpo trains in one process for now, and this run has {me.world_size}: "
                             "set resources.gpus to 1 and resources.nodes to 1 (or run kubetune run without "
                             "--processes)")

    shared = distributed.shared_across_nodes(work.root)
    reporter.stage(Stage.LOADING, "reading the datasets")
    with distributed.preparers_first(shared):  # one download per node, then the caches serve the rest
        mix = load_mix(spec.datasets, config.dataset_names, mounts=config.mounts, token=tokens.data or tokens.hf,
                       seed=hp.seed, max_samples=hp.max_samples, labels=declared, log=reporter.log,
                       allow_private_urls=config.allow_private_urls)
    _check_objective(mix, spec.method.objective)
    labels = declared or _labels_in(mix)
    if classification:
        _check_classification(mix, labels, multi_label)
        reporter.log(f"labels ({len(labels)}): {', '.join(labels[:20])}{' ...' if len(labels) > 20 else ''}")

    reporter.stage(Stage.LOADING, f"loading the base model {spec.base_model.describe()}")
    with distributed.preparers_first(shared):
        resolved = resolve_base_model(spec.base_model, work_dir=work.root, mounts=config.mounts, token=tokens.hf,
                                      seed=hp.seed, scratch_texts=lambda: _texts(mix), log=reporter.log)
    plan = plan_device(hp.precision)
    if plan.warning:
        reporter.log(f"warning: {plan.warning}")
    tokenizer = load_tokenizer(resolved.folder, log=reporter.log)
    parallel = choose_parallelism(spec.distributed.strategy, method=spec.method.type, model_folder=resolved.folder,
                                  world_size=me.world_size, cuda=plan.cuda, shared_work_dir=shared,
                                  gpu_memory=gpu_memory_bytes(me.local_rank) if plan.cuda else None)
    # Sample answers come from rank 0 alone; an FSDP model is in shards, so none are made then.
    prompts = [] if classification or not me.is_main or parallel.fsdp else sample_prompts(mix.validation)
    session = _Session(config, work, reporter, stop, resolved.folder, tokenizer, plan, prompts, attempt=attempt,
                       parallel=parallel)
    if spec.method.objective is Objective.DPO:
        model, metrics = _train_dpo(session, mix)
    else:
        model, metrics = _train_sft(session, mix, labels if classification else [], multi_label)
    if not me.is_main:
        return None  # rank 0 writes final/; the others wait for its result (pipeline.py)
    return TrainedModel(model=model, tokenizer=tokenizer, resolved=resolved, metrics=metrics,
                        labels=labels if classification else [], plan=plan, samples=session.samples(model),
                        state_dict=session.state_dict)


@dataclass
class _Session:
    """What both objectives share: the run's settings, the tokenizer, and the sample prompts."""

    config: TrainerConfig
    work: WorkDir
    reporter: Reporter
    stop: StopRequest
    folder: Path
    tokenizer: Any
    plan: DevicePlan
    prompts: list[SamplePrompt]
    attempt: int = 1  # which start of the trainer on this run folder
    parallel: ParallelPlan = ONE_PROCESS
    base_answers: list[str] | None = None
    state_dict: Any = None  # FSDP's gathered model, for the final folder

    def answer_as_base(self, model: Any) -> None:
        """Before training: the base model's answers to the sample prompts."""
        if self.prompts:
            self.base_answers = base_answers(self.work.root / BASE_ANSWERS_FILE, self.prompts,
                                             lambda: generate_answers(model, self.tokenizer, self.prompts))

    def samples(self, model: Any) -> list[Sample]:
        """After training: base and tuned answers side by side, also in <work_dir>/samples.json."""
        if not self.prompts or self.base_answers is None:
            return []
        self.reporter.log(f"answering {len(self.prompts)} validation prompts with the tuned model for the model card")
        tuned = generate_answers(model, self.tokenizer, self.prompts)
        samples = build_samples(self.prompts, self.base_answers, tuned, self.reporter.secrets)
        write_samples(self.work.root / SAMPLES_FILE, samples)
        for number, sample in enumerate(samples, start=1):
            self.reporter.log(f"sample {number}: {_line(sample.prompt)} -> base: {_line(sample.base)} | tuned: "
                              f"{_line(sample.tuned)}")
        return samples


def _line(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def _train_sft(session: _Session, mix: DataMix, labels: list[str], multi_label: bool) -> tuple[Any, TrainingMetrics]:

    config, reporter, tokenizer = session.config, session.reporter, session.tokenizer
    spec, hp = config.spec, config.spec.hyperparameters
    started = time.monotonic()
    if labels:
        def prepare(rows: list[Example]) -> Any:
            return tokenize_for_classification(rows, tokenizer, max_length=hp.max_seq_length, labels=labels,
                                               multi_label=multi_label)
    else:
        def prepare(rows: list[Example]) -> Any:
            return tokenize_for_generation(rows, tokenizer, max_length=hp.max_seq_length,
                                           train_on_inputs=hp.train_on_inputs)
    train_data = prepare(mix.train)
    eval_data = prepare(mix.validation) if mix.validation else None
    reporter.log(f"data: {len(train_data)} training rows ({train_data.trainable_tokens()} tokens in the loss), "
                 f"{len(eval_data) if eval_data is not None else 0} validation rows, prepared in "
                 f"{time.monotonic() - started:.1f}s")
    if train_data.dropped:
        reporter.log(f"warning: {train_data.dropped} training rows had no answer token left after truncation "
                     f"to maxSeqLength {hp.max_seq_length} and were skipped")
    if len(train_data) == 0:
        raise TrainerFailure(FailureReason.DATASET_INVALID,
                             f"no training row fits maxSeqLength {hp.max_seq_length} with its answer")
    distributed.check_same_everywhere("training and validation rows", distributed.fingerprint(
        train_data.ids, train_data.starts, train_data.mask, train_data.targets,
        *((eval_data.ids, eval_data.starts) if eval_data is not None else ())))
    _describe_parallelism(session, reporter)

    def load() -> Any:
        return load_model(session.folder, task=spec.task, method=spec.method, plan=session.plan,
                          pad_token_id=tokenizer.pad_token_id, labels=labels, multi_label=multi_label)

    model = load()
    session.answer_as_base(model)
    outcome = run_training(config, session.work, reporter, session.stop, model=model, tokenizer=tokenizer,
                           plan=session.plan, train_data=train_data, eval_data=eval_data, multi_label=multi_label,
                           attempt=session.attempt, parallel=session.parallel, reload_model=load)
    session.state_dict = outcome.state_dict
    return outcome.model, TrainingMetrics(
        train_loss=outcome.train_loss, eval_loss=outcome.tuned.loss, base_eval_loss=outcome.base.loss,
        eval_accuracy=outcome.tuned.accuracy, base_eval_accuracy=outcome.base.accuracy,
        trained_tokens=outcome.trained_tokens, train_rows=len(train_data), steps=outcome.steps,
        runtime_seconds=round(outcome.runtime_seconds, 1),
    )


def _describe_parallelism(session: _Session, reporter: Reporter) -> None:
    parallel, hp, me = session.parallel, session.config.spec.hyperparameters, distributed.ranks()
    if parallel.strategy is not None:
        effective = effective_batch_size(hp.per_device_batch_size, me.world_size, hp.gradient_accumulation_steps)
        reporter.log(f"distributed: {me.world_size} processes, {parallel.strategy.value} ({parallel.reason}); "
                     f"effective batch {effective} "
                     f"= {hp.per_device_batch_size} per device x {me.world_size} x {hp.gradient_accumulation_steps} "
                     f"accumulation; work folder {'shared by' if parallel.shared_work_dir else 'separate on'} the "
                     "nodes")
    if parallel.warning:
        reporter.log(f"warning: {parallel.warning}")


def _train_dpo(session: _Session, mix: DataMix) -> tuple[Any, TrainingMetrics]:

    spec = session.config.spec
    model = load_model(session.folder, task=spec.task, method=spec.method, plan=session.plan,
                       pad_token_id=session.tokenizer.pad_token_id, wrap=False)
    session.answer_as_base(model)
    adapter = lora_config(model, spec.task, spec.method) if spec.method.type is not TuningMethod.FULL else None
    train = [e for e in mix.train if isinstance(e, PreferenceExample)]
    validation = [e for e in mix.validation if isinstance(e, PreferenceExample)]
    outcome = run_dpo(session.config, session.work, session.reporter, session.stop, model=model,
                      peft_config=adapter, tokenizer=session.tokenizer, plan=session.plan, train_rows=train,
                      eval_rows=validation, attempt=session.attempt)
    found = outcome.metrics
    return outcome.model, TrainingMetrics(
        train_loss=outcome.train_loss, eval_loss=found.loss, trained_tokens=outcome.trained_tokens,
        base_eval_loss=round(BASE_DPO_LOSS, 4) if found.loss is not None else None,
        train_rows=len(train), steps=outcome.steps, runtime_seconds=round(outcome.runtime_seconds, 1),
        preference_accuracy=found.preference_accuracy, base_preference_accuracy=found.base_preference_accuracy,
        reward_margin=found.reward_margin, reward_accuracy=found.reward_accuracy,
    )


def _check_objective(mix: DataMix, objective: Objective) -> None:
    rows = [*mix.train, *mix.validation]
    if objective is Objective.DPO:
        other = next((e for e in rows if not isinstance(e, PreferenceExample)), None)
        if other is not None:
            names = ", ".join(f"{name} ({fmt.value})" for name, fmt in mix.formats.items()
                              if fmt is not DatasetFormat.PREFERENCE)
            raise TrainerFailure(FailureReason.DATASET_INVALID,
                                 f"method.objective dpo trains on preference pairs (prompt, chosen, rejected), but "
                                 f"{names or 'a dataset'} holds other rows: give preference data, or set "
                                 "method.objective: sft")
    elif any(isinstance(e, PreferenceExample) for e in rows):
        names = ", ".join(name for name, fmt in mix.formats.items() if fmt is DatasetFormat.PREFERENCE)
        raise TrainerFailure(FailureReason.DATASET_INVALID,
                             f"{names} holds preference pairs (chosen/rejected): set method.objective: dpo to train "
                             "on them, or give rows with one answer each")


def _labels_in(mix: DataMix) -> list[str]:
    found = {label for e in [*mix.train, *mix.validation] if isinstance(e, ClassificationExample)
             for label in e.labels}
    return sorted(found)


def _check_classification(mix: DataMix, labels: list[str], multi_label: bool) -> None:
    if any(not isinstance(e, ClassificationExample) for e in [*mix.train, *mix.validation]):
        raise TrainerFailure(FailureReason.DATASET_INVALID,
                             "task textClassification needs classification rows (text + label): "
                             "set format: classification on the datasets")
    if len(labels) < 2:
        raise TrainerFailure(FailureReason.DATASET_INVALID,
                             f"classification needs at least two labels, found {labels or 'none'}")
    if not multi_label:
        several = next((e for e in mix.train if isinstance(e, ClassificationExample) and len(e.labels) != 1), None)
        if several is not None:
            raise TrainerFailure(FailureReason.DATASET_INVALID,
                                 f"a row carries {len(several.labels)} labels but classification.multiLabel is "
                                 "false: set multiLabel: true or give each row one label")


def _texts(mix: DataMix) -> list[str]:
    """Text for training a scratch tokenizer: every field of every row."""
    texts: list[str] = []
    for example in mix.train + mix.validation:
        if isinstance(example, ChatExample):
            texts.extend(m.content for m in example.messages)
        elif isinstance(example, PreferenceExample):
            texts.extend([*(m.content for m in example.prompt), example.chosen, example.rejected])
        else:
            texts.append(example.text)
    return texts


def _quiet_libraries() -> None:
    """Progress bars and deprecation chatter would drown the progress lines in the Pod log."""
    import warnings

    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as transformers_logging

    disable_progress_bars()
    transformers_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
