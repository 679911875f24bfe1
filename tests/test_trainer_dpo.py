"""Preference tuning (DPO) on CPU with a scratch model: every preference format trains, the figures are sane,
and sample generations reach the result, the model card and the run folder."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from kubetune.api.contract import TERMINATION_MESSAGE_LIMIT, ExitCode, TrainerResult
from kubetune_trainer.cli import main
from kubetune_trainer.training.dpo import preference_metrics
from support.toydata import PREFERENCE_FORMATS, generation_rows, preference_rows, write_jsonl
from support.trainer_config import data_entry, run_dir, trainer_config, write_config


def run_trainer(tmp_path: Path, capsys: pytest.CaptureFixture[str], **config_args: Any) -> tuple[int, TrainerResult,
                                                                                                 str]:
    config = trainer_config(tmp_path, **config_args)
    code = main(["train", "--config", str(write_config(tmp_path, config))])
    out = capsys.readouterr().out
    raw = (tmp_path / "result.json").read_text(encoding="utf-8")
    assert len(raw.encode()) <= TERMINATION_MESSAGE_LIMIT
    return code, TrainerResult.model_validate_json(raw), out


def test_metrics_from_scores() -> None:
    # Pair 1: the base already prefers chosen, tuning widens it; pair 2: tuning flips a wrong preference.
    base = [(-5.0, -6.0), (-4.0, -3.0)]
    tuned = [(-4.0, -7.0), (-3.0, -5.0)]
    found = preference_metrics(base, tuned, beta=0.5)
    assert found.base_preference_accuracy == 0.5 and found.preference_accuracy == 1.0
    assert found.reward_accuracy == 1.0
    assert found.reward_margin == pytest.approx(0.5 * ((1 + 1) + (1 + 2)) / 2)
    assert found.loss == pytest.approx((math.log1p(math.exp(-0.5 * 2)) + math.log1p(math.exp(-0.5 * 3))) / 2)
    assert preference_metrics([], [], beta=0.1).preference_accuracy is None


@pytest.mark.slow
@pytest.mark.parametrize("fmt", PREFERENCE_FORMATS)
def test_every_preference_format_trains_with_dpo(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 fmt: str) -> None:
    write_jsonl(tmp_path / "data" / "pairs.jsonl", preference_rows(fmt, 40))
    code, result, out = run_trainer(tmp_path, capsys, train=[data_entry("pairs.jsonl")], objective="dpo",
                                    hyperparameters={"maxSteps": 4, "loggingSteps": 2, "learningRate": 5e-3})
    assert code == ExitCode.OK, result
    metrics = result.metrics
    assert metrics is not None and metrics.steps == 4 and metrics.train_rows == 38
    assert metrics.preference_accuracy is not None and 0 <= metrics.preference_accuracy <= 1
    assert metrics.base_preference_accuracy is not None and 0 <= metrics.base_preference_accuracy <= 1
    assert metrics.reward_margin is not None and math.isfinite(metrics.reward_margin)
    assert metrics.reward_accuracy is not None and metrics.eval_loss is not None
    assert "preference accuracy: base" in out and "format preference" in out
    assert "the reference model is the base with the adapter off" in out
    final = run_dir(tmp_path) / "final"
    assert (final / "adapter_model.safetensors").is_file()
    assert not (final / "ref").exists()  # trl's reference is the base with the adapter off, not a second adapter
    card = (final / "README.md").read_text(encoding="utf-8")
    assert "| Preference accuracy |" in card and "LoRA + DPO" in card and "dpoBeta" in card

    # Two validation rows (5% of 40): both answered by base and tuned, side by side.
    assert len(result.samples) == 2 and all(s.prompt and s.reference for s in result.samples)
    assert "## Sample generations" in card and result.samples[0].prompt in card
    saved = json.loads((run_dir(tmp_path) / "samples.json").read_text(encoding="utf-8"))
    assert [s["prompt"] for s in saved] == [s.prompt for s in result.samples]


@pytest.mark.slow
def test_full_dpo_uses_a_frozen_copy_of_the_base_as_reference(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    write_jsonl(tmp_path / "data" / "pairs.jsonl", preference_rows("standard", 40))
    code, result, out = run_trainer(tmp_path, capsys, train=[data_entry("pairs.jsonl")], objective="dpo",
                                    method="Full", hyperparameters={"maxSteps": 3, "learningRate": 1e-3})
    assert code == ExitCode.OK, result
    assert "the reference model is a frozen copy of the base" in out
    assert result.metrics is not None and result.metrics.reward_margin is not None
    assert (run_dir(tmp_path) / "final" / "model.safetensors").is_file()


@pytest.mark.slow
def test_dpo_on_rows_without_a_rejected_answer_says_what_to_do(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    write_jsonl(tmp_path / "data" / "chat.jsonl", generation_rows("messages", 20))
    code, result, _ = run_trainer(tmp_path, capsys, train=[data_entry("chat.jsonl")], objective="dpo")
    assert code == ExitCode.PERMANENT and result.reason == "DatasetInvalid"
    assert result.message and "method.objective dpo trains on preference pairs" in result.message
    assert "chat.jsonl (messages)" in result.message


@pytest.mark.slow
def test_sft_on_preference_rows_says_to_use_dpo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_jsonl(tmp_path / "data" / "pairs.jsonl", preference_rows("openai", 20))
    code, result, _ = run_trainer(tmp_path, capsys, train=[data_entry("pairs.jsonl")])
    assert code == ExitCode.PERMANENT and result.message and "set method.objective: dpo" in result.message


def test_samples_fit_the_termination_message_and_give_way_first() -> None:
    from kubetune.api.contract import TrainerResult
    from kubetune.api.tuningjobstatus import TrainingMetrics
    from kubetune_trainer.termination import fit_termination_message, termination_json
    from kubetune_trainer.training.samples import Sample, for_result

    long = "Ж" * 1000  # two bytes each in UTF-8
    samples = for_result([Sample(prompt=long, reference=long, base=long, tuned=f"hf_secret_token_123 {long}")] * 3)
    assert all(len(s.tuned) == 160 for s in samples)  # truncated for the result; the card has them in full
    result = TrainerResult(status="Failed", reason="PushFailed", message="push failed: " + "x" * 2000,
                           metrics=TrainingMetrics(preference_accuracy=0.5), samples=samples)
    fitted = fit_termination_message(result, ["hf_secret_token_123"])
    assert len(termination_json(fitted).encode()) <= TERMINATION_MESSAGE_LIMIT
    assert 1 <= len(fitted.samples) < 3 and fitted.message is not None and fitted.message.startswith("push failed")
    assert "hf_secret_token_123" not in termination_json(fitted)  # a model may repeat a token it saw
