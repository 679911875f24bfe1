"""Preference tuning (method.objective dpo) with trl's DPOTrainer, and how the pairs scored before and after.

With LoRA or QLoRA, trl adds the adapter itself (the model comes unwrapped, with a LoraConfig), so
its reference model is the base with the adapter switched off: no second copy in memory. With
Full, trl loads a frozen copy of the base as the reference.

The scores: for every validation pair, the summed log-likelihood of the chosen and of the rejected
answer given the prompt, under the base and under the tuned model. From these four numbers come
the preference accuracy of each model (how often it finds the chosen answer more likely), the
DPO reward margin (beta times how much more the chosen answer gained than the rejected one) and
the reward accuracy (how often it gained more), the figures trl logs as rewards/*. The base
scores are taken before training and kept in the work folder, so a resumed run compares with the
same base.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune.api.contract import FailureReason, TrainerConfig
from kubetune.api.progress import Stage
from kubetune_trainer.data.rows import PreferenceExample
from kubetune_trainer.errors import TrainerFailure
from kubetune_trainer.events import Reporter
from kubetune_trainer.stop import StopRequest
from kubetune_trainer.training.attempt import (
    attempt_callbacks,
    diverged_failure,
    find_resume_point,
    set_aside_bad_checkpoints,
    stopped_failure,
)
from kubetune_trainer.training.callbacks import DivergenceCallback
from kubetune_trainer.training.device import DevicePlan
from kubetune_trainer.training.divergence import DivergenceDetector
from kubetune_trainer.workdir import WorkDir

BASE_SCORES_FILE = "base-preference-scores.json"
Scores = list[tuple[float, float]]  # (log p(chosen | prompt), log p(rejected | prompt)) per pair


# The DPO loss of the reference model itself: its implicit rewards are all 0, so -log sigmoid(0).
BASE_DPO_LOSS = math.log(2)


@dataclass(frozen=True)
class PreferenceMetrics:
    loss: float | None  # DPO loss on the validation pairs (BASE_DPO_LOSS for the base)
    preference_accuracy: float | None
    base_preference_accuracy: float | None
    reward_margin: float | None
    reward_accuracy: float | None


@dataclass
class PreferenceOutcome:
    model: Any
    train_loss: float | None
    trained_tokens: int
    steps: int
    runtime_seconds: float
    metrics: PreferenceMetrics


def preference_metrics(base: Scores, tuned: Scores, beta: float) -> PreferenceMetrics:
    """The validation figures from the per-pair scores of the base and the tuned model."""
    if not base or len(base) != len(tuned):
        return PreferenceMetrics(None, None, None, None, None)
    gains = [(tc - bc) - (tr - br) for (bc, br), (tc, tr) in zip(base, tuned, strict=True)]
    count = len(gains)
    loss = sum(_softplus(-beta * gain) for gain in gains) / count  # -log sigmoid(beta * gain)
    return PreferenceMetrics(
        loss=_finite(loss),
        preference_accuracy=sum(c > r for c, r in tuned) / count,
        base_preference_accuracy=sum(c > r for c, r in base) / count,
        reward_margin=_finite(beta * sum(gains) / count),
        reward_accuracy=sum(gain > 0 for gain in gains) / count,
    )


def _softplus(x: float) -> float:
    return x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def conversational_rows(examples: Sequence[PreferenceExample]) -> list[dict[str, Any]]:
    """trl's conversational preference rows: the prompt turns, and one assistant turn per answer."""
    return [{
        "prompt": [{"role": m.role, "content": m.content} for m in e.prompt],
        "chosen": [{"role": "assistant", "content": e.chosen}],
        "rejected": [{"role": "assistant", "content": e.rejected}],
    } for e in examples]


def run_dpo(config: TrainerConfig, work: WorkDir, reporter: Reporter, stop: StopRequest, *, model: Any,
            peft_config: Any, tokenizer: Any, plan: DevicePlan, train_rows: Sequence[PreferenceExample],
            eval_rows: Sequence[PreferenceExample], attempt: int = 1) -> PreferenceOutcome:
    import torch
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    from kubetune_trainer.training.trainloop import training_argument_values

    hp, beta = config.spec.hyperparameters, config.spec.method.dpo.beta
    values = training_argument_values(hp, output_dir=work.checkpoints, plan=plan, has_eval=bool(eval_rows),
                                      classification=False)
    values.update(label_names=[], max_length=hp.max_seq_length, beta=beta, gradient_checkpointing=False,
                  precompute_ref_log_probs=False)
    point = find_resume_point(work, reporter)
    divergence = DivergenceCallback(DivergenceDetector(config.spec.guardrails.divergence), reporter)
    reference = "the base with the adapter off" if peft_config is not None else "a frozen copy of the base"
    reporter.log(f"preference tuning (DPO, beta {beta}) on {len(train_rows)} pairs; the reference model is "
                 f"{reference}")
    trainer = DPOTrainer(
        model=model, args=DPOConfig(**values),
        train_dataset=Dataset.from_list(conversational_rows(train_rows)),
        eval_dataset=Dataset.from_list(conversational_rows(eval_rows)) if eval_rows else None,
        processing_class=tokenizer, peft_config=peft_config,
        callbacks=attempt_callbacks(reporter, stop, point, attempt=attempt, divergence=divergence, log_dir=work.runs),
    )
    trainer.remove_callback(PrinterCallback)
    pairs = _tokenized_pairs(trainer.eval_dataset)
    score = _scorer(tokenizer.pad_token_id, hp.per_device_batch_size, hp.max_seq_length)
    try:
        base = _load_scores(work.root / BASE_SCORES_FILE, len(pairs))
        if base is None:
            reporter.stage(Stage.EVALUATING, "scoring the validation pairs with the base model")
            base = score(trainer.model, pairs)
            _save_scores(work.root / BASE_SCORES_FILE, base)
        reporter.stage(Stage.TRAINING, point.stage_message())
        output = trainer.train(resume_from_checkpoint=point.argument)
        if divergence.detector.diverged is not None:
            raise diverged_failure(work, divergence.detector, set_aside_bad_checkpoints(work, divergence.detector))
        if stop.requested:
            raise stopped_failure(stop, trainer.state.global_step, work)
        reporter.stage(Stage.EVALUATING, "scoring the validation pairs with the tuned model")
        tuned = score(trainer.model, pairs)
    except torch.cuda.OutOfMemoryError:
        raise TrainerFailure(
            FailureReason.OUT_OF_MEMORY,
            f"the GPU ran out of memory (perDeviceBatchSize {hp.per_device_batch_size}, maxSeqLength "
            f"{hp.max_seq_length}; DPO holds a chosen and a rejected answer per row): lower them (raise "
            "gradientAccumulationSteps to keep the batch), use QLoRA, or request a larger GPU",
        ) from None
    metrics = preference_metrics(base, tuned, beta)
    reporter.log(_summary(metrics))
    return PreferenceOutcome(
        model=trainer.model, train_loss=_finite(output.training_loss) if output.training_loss is not None else None,
        trained_tokens=trainer.state.num_input_tokens_seen, steps=trainer.state.global_step,
        runtime_seconds=float((output.metrics or {}).get("train_runtime", 0.0)), metrics=metrics,
    )


def _summary(metrics: PreferenceMetrics) -> str:
    def show(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    return (f"preference accuracy: base {show(metrics.base_preference_accuracy)} -> tuned "
            f"{show(metrics.preference_accuracy)}; reward margin {show(metrics.reward_margin)}, reward accuracy "
            f"{show(metrics.reward_accuracy)}, validation DPO loss {show(metrics.loss)}")


def _tokenized_pairs(dataset: Any) -> list[tuple[list[int], list[int], list[int]]]:
    """(prompt, chosen, rejected) token ids, as trl prepared them for its own evaluation."""
    if dataset is None:
        return []
    return [(list(row["prompt_ids"]), list(row["chosen_ids"]), list(row["rejected_ids"])) for row in dataset]


def _scorer(pad_id: int, batch_size: int, max_length: int) -> Any:
    def score(model: Any, pairs: list[tuple[list[int], list[int], list[int]]]) -> Scores:
        sequences = [(p, c) for p, c, _ in pairs] + [(p, r) for p, _, r in pairs]
        logps = completion_logps(model, sequences, pad_id=pad_id, batch_size=batch_size, max_length=max_length)
        return list(zip(logps[: len(pairs)], logps[len(pairs):], strict=True))
    return score


def completion_logps(model: Any, sequences: Sequence[tuple[list[int], list[int]]], *, pad_id: int,
                     batch_size: int, max_length: int) -> list[float]:
    """Summed log-probability of each completion given its prompt (truncated like trl: the start is kept)."""
    import torch

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    found: list[float] = []
    try:
        with torch.no_grad():
            for start in range(0, len(sequences), batch_size):
                chunk = sequences[start:start + batch_size]
                ids = [(p + c)[:max_length] for p, c in chunk]
                marks = [([0] * len(p) + [1] * len(c))[:max_length] for p, c in chunk]
                width = max(len(i) for i in ids)
                input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
                attention = torch.zeros((len(ids), width), dtype=torch.long)
                completion = torch.zeros((len(ids), width), dtype=torch.float32)
                for row, (tokens, mark) in enumerate(zip(ids, marks, strict=True)):
                    input_ids[row, :len(tokens)] = torch.tensor(tokens)
                    attention[row, :len(tokens)] = 1
                    completion[row, :len(mark)] = torch.tensor(mark, dtype=torch.float32)
                logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                               use_cache=False).logits.float()
                logp = torch.log_softmax(logits[:, :-1], dim=-1)
                picked = logp.gather(-1, input_ids[:, 1:, None].to(device)).squeeze(-1)
                found.extend((picked * completion[:, 1:].to(device)).sum(dim=-1).tolist())
    finally:
        model.train(was_training)
    return found


def _save_scores(path: Path, scores: Scores) -> None:
    path.write_text(json.dumps(scores), encoding="utf-8")


def _load_scores(path: Path, count: int) -> Scores | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, list) or len(data) != count:
        return None  # another validation set: score the base again
    return [(float(c), float(r)) for c, r in data]
