"""Real training on CPU with scratch models: every format, LoRA/Full, classification, failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubetune.api.contract import TERMINATION_MESSAGE_LIMIT, ExitCode, TrainerResult
from kubetune.api.progress import ProgressEvent, Stage, StageEvent, parse_line
from kubetune_trainer.cli import main
from support.toydata import GENERATION_FORMATS, classification_rows, generation_rows, write_jsonl
from support.trainer_config import data_entry, run_dir, trainer_config, write_config

pytestmark = pytest.mark.slow


def run_trainer(tmp_path: Path, capsys: pytest.CaptureFixture[str], **config_args: Any) -> tuple[int, TrainerResult,
                                                                                                 list[str]]:
    config = trainer_config(tmp_path, **config_args)
    code = main(["train", "--config", str(write_config(tmp_path, config))])
    out = capsys.readouterr().out
    raw = (tmp_path / "result.json").read_text(encoding="utf-8")
    assert len(raw.encode()) <= TERMINATION_MESSAGE_LIMIT
    return code, TrainerResult.model_validate_json(raw), out.splitlines()


def progress(lines: list[str]) -> list[ProgressEvent]:
    return [e for e in map(parse_line, lines) if isinstance(e, ProgressEvent)]


def stages(lines: list[str]) -> list[Stage]:
    return [e.stage for e in map(parse_line, lines) if isinstance(e, StageEvent)]


@pytest.mark.parametrize("fmt", GENERATION_FORMATS)
def test_every_format_trains_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    write_jsonl(tmp_path / "data" / "train.jsonl", generation_rows(fmt, 40))
    code, result, lines = run_trainer(tmp_path, capsys, train=[data_entry("train.jsonl")],
                                      hyperparameters={"maxSteps": 4, "loggingSteps": 2})
    assert code == ExitCode.OK, result
    assert result.status == "Succeeded" and result.metrics is not None
    assert result.metrics.steps == 4 and result.metrics.train_rows == 38
    assert result.metrics.trained_tokens and result.metrics.base_eval_loss and result.metrics.eval_loss
    steps = [e.step for e in progress(lines) if e.loss is not None]
    assert steps == [2, 4]
    assert all(e.total_steps == 4 and e.tokens_per_second for e in progress(lines) if e.loss is not None)
    assert stages(lines) == [Stage.LOADING, Stage.LOADING, Stage.EVALUATING, Stage.TRAINING, Stage.EVALUATING,
                             Stage.SAVING, Stage.DONE]
    final = run_dir(tmp_path) / "final"
    assert (final / "adapter_model.safetensors").is_file() and (final / "README.md").is_file()
    assert list((final / "runs").iterdir()), "TensorBoard events are kept with the model"


@pytest.mark.parametrize("method", ["LoRA", "Full"])
def test_a_learnable_task_learns(tmp_path: Path, capsys: pytest.CaptureFixture[str], method: str) -> None:
    write_jsonl(tmp_path / "data" / "train.jsonl", generation_rows("messages", 160, seed=1))
    write_jsonl(tmp_path / "data" / "val.jsonl", generation_rows("messages", 16, seed=2))
    code, result, lines = run_trainer(
        tmp_path, capsys, method=method, train=[data_entry("train.jsonl")], validation=[data_entry("val.jsonl")],
        hyperparameters={"maxSteps": 40, "loggingSteps": 10, "evalSteps": 20,
                         "learningRate": 1e-2 if method == "LoRA" else 3e-3},
    )
    assert code == ExitCode.OK, result
    assert result.metrics is not None
    losses = [e.loss for e in progress(lines) if e.loss is not None]
    assert losses[-1] < losses[0] * 0.95, losses
    assert result.metrics.eval_loss is not None and result.metrics.base_eval_loss is not None
    # LoRA on a random base moves slower than Full, but both must beat the base clearly.
    assert result.metrics.eval_loss < result.metrics.base_eval_loss * 0.9
    assert any(e.eval_loss is not None and e.step == 20 for e in progress(lines)), "evalSteps reaches the trainer"
    final = run_dir(tmp_path) / "final"
    weights = "adapter_model.safetensors" if method == "LoRA" else "model.safetensors"
    assert (final / weights).is_file()
    # Sample generations: the same three validation prompts, before and after. The random base cannot
    # answer; the tuned model has learnt the shape of the answers.
    assert [s.prompt for s in result.samples] == [r["messages"][0]["content"]
                                                  for r in generation_rows("messages", 16, seed=2)[:3]]
    assert all(s.tuned.startswith("The capital of") for s in result.samples), result.samples
    assert all(not s.base.startswith("The capital of") for s in result.samples), result.samples
    card = (final / "README.md").read_text(encoding="utf-8")
    assert "## Sample generations" in card and result.samples[0].tuned in card


@pytest.mark.parametrize("multi_label", [False, True])
def test_classification_with_lora(tmp_path: Path, capsys: pytest.CaptureFixture[str], multi_label: bool) -> None:
    write_jsonl(tmp_path / "data" / "train.jsonl", classification_rows(160, seed=1, multi_label=multi_label))
    code, result, _ = run_trainer(
        tmp_path, capsys, task="textClassification", train=[data_entry("train.jsonl", "classification")],
        classification={"multiLabel": multi_label}, hyperparameters={"maxSteps": 40, "learningRate": 1e-2},
    )
    assert code == ExitCode.OK, result
    metrics = result.metrics
    assert metrics is not None and metrics.eval_accuracy is not None and metrics.base_eval_accuracy is not None
    assert metrics.eval_loss is not None and metrics.base_eval_loss is not None
    assert metrics.eval_loss < metrics.base_eval_loss
    final = run_dir(tmp_path) / "final"
    assert json.loads((final / "labels.json").read_text()) == ["food", "music", "sports"]
    adapter_config = json.loads((final / "adapter_config.json").read_text())
    assert adapter_config["task_type"] == "SEQ_CLS" and adapter_config["modules_to_save"]


def test_a_defective_row_fails_with_its_row_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = generation_rows("alpaca", 10)
    rows[6] = {"instruction": "Capital of Peru?", "output": ""}
    write_jsonl(tmp_path / "data" / "train.jsonl", rows)
    code, result, _ = run_trainer(tmp_path, capsys, train=[data_entry("train.jsonl")])
    assert code == ExitCode.PERMANENT
    assert result.reason == "DatasetInvalid" and result.retryable is False
    assert result.message is not None and "row 7" in result.message and "output" in result.message
    assert not (run_dir(tmp_path) / "scratch-base").exists(), "fails before the model is built"


def test_qlora_without_cuda_is_refused_before_loading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_jsonl(tmp_path / "data" / "train.jsonl", generation_rows("alpaca", 10))
    config = trainer_config(tmp_path, train=[data_entry("train.jsonl")])
    config.spec.method = config.spec.method.model_validate({"type": "QLoRA", "quantization": {"bits": 4}})
    code = main(["train", "--config", str(write_config(tmp_path, config))])
    result = TrainerResult.model_validate_json((tmp_path / "result.json").read_text())
    assert code == ExitCode.PERMANENT and result.reason == "UnsupportedDevice"
    assert "CUDA" in (result.message or "")
    assert not (run_dir(tmp_path) / "scratch-base").exists()
    assert stages(capsys.readouterr().out.splitlines()) == []


def test_the_token_never_appears_in_output(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "hf_" + "S3cretTokenValue0123456789abcdef"
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setenv("KUBETUNE_DATA_TOKEN", "data-secret-value-42")
    write_jsonl(tmp_path / "data" / "train.jsonl", generation_rows("alpaca", 20))
    # A file name carrying the secrets makes them show up in the error a missing file raises.
    missing = f"missing-{secret}-data-secret-value-42.jsonl"
    code, result, lines = run_trainer(tmp_path, capsys, train=[data_entry("train.jsonl"), data_entry(missing)])
    assert code != ExitCode.OK and result.reason == "DatasetNotFound"
    raw = (tmp_path / "result.json").read_text()
    assert "missing-" in raw and "***" in raw
    for text in [raw, *lines]:
        assert secret not in text and "data-secret-value-42" not in text


def test_an_unreadable_config_is_invalid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"contractVersion": "1.0", "name": "x", "spec": {"baseModel": {}}}))
    code = main(["train", "--config", str(path), "--result-path", str(tmp_path / "r.json")])
    result = TrainerResult.model_validate_json((tmp_path / "r.json").read_text())
    assert code == ExitCode.PERMANENT and result.reason == "InvalidConfig"
