"""The trainer's guardrails on CPU with injected faults: a CUDA out-of-memory error is retried with
a smaller batch from the last checkpoint; a NaN or spiking loss stops the run as Diverged.

Faults are injected by wrapping the trainer's model loader (test-side only): a forward pre-hook
raises torch.cuda.OutOfMemoryError when a training batch is larger than the "GPU" takes, and a
forward hook turns the loss into NaN or multiplies it, from a given forward call on. The real
exception class is raised, so the trainer's own handler is what is tested.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubetune.api.contract import ExitCode, TrainerResult
from kubetune.api.progress import ProgressEvent, parse_line
from kubetune_trainer.cli import main
from kubetune_trainer.workdir import WorkDir
from support.modelhooks import hooked_model_loader
from support.toydata import generation_rows, write_jsonl
from support.trainer_config import data_entry, trainer_config, write_config

pytestmark = pytest.mark.slow


@dataclass
class Faults:
    oom_above_batch: int | None = None  # training batches larger than this run out of "GPU" memory
    oom_after_calls: int = 0  # ... once this many training forward calls went through
    loss_factor: float = 1.0  # multiply the loss by this (math.nan: NaN) ...
    loss_from_call: int | None = None  # ... from this training forward call on
    calls: int = 0
    ooms: int = 0
    rows: list[int] | None = None  # rows of each training forward call that went through

    def reset(self) -> None:
        self.calls, self.ooms, self.rows = 0, 0, []


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Iterator[Faults]:
    import torch

    import kubetune_trainer.training.train as train_stage

    injected = Faults(rows=[])

    def before(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        if not module.training:
            return
        injected.calls += 1
        batch = kwargs["input_ids"].shape[0]
        if injected.oom_above_batch is not None and injected.calls > injected.oom_after_calls \
                and batch > injected.oom_above_batch:
            injected.ooms += 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        assert injected.rows is not None
        injected.rows.append(batch)

    def after(module: Any, args: Any, kwargs: dict[str, Any], output: Any) -> Any:
        if module.training and injected.loss_from_call is not None and injected.calls >= injected.loss_from_call:
            output["loss"] = output["loss"] * injected.loss_factor
        return output

    monkeypatch.setattr(train_stage, "load_model", hooked_model_loader(train_stage.load_model, before, after))
    yield injected


def train(tmp_path: Path, capsys: pytest.CaptureFixture[str], folder: str = "run",
          **config_args: Any) -> tuple[int, TrainerResult, list[str]]:
    root = tmp_path / folder
    write_jsonl(root / "data" / "train.jsonl", generation_rows("alpaca", 40))
    config = trainer_config(root, train=[data_entry("train.jsonl")], **config_args)
    code = main(["train", "--config", str(write_config(root, config))])
    lines = capsys.readouterr().out.splitlines()
    return code, TrainerResult.model_validate_json((root / "result.json").read_text()), lines


def run_work(tmp_path: Path, folder: str = "run") -> WorkDir:
    """The run's own folder (runs/<uid>-<runHash>/) under the config's work folder."""
    [run] = (tmp_path / folder / "work" / "runs").iterdir()
    return WorkDir(run)


def progress(lines: list[str]) -> list[ProgressEvent]:
    return [e for e in map(parse_line, lines) if isinstance(e, ProgressEvent)]


HP = {"maxSteps": 10, "perDeviceBatchSize": 8, "loggingSteps": 1, "saveSteps": 2}


def test_out_of_memory_halves_the_batch_and_resumes_from_the_last_checkpoint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], faults: Faults) -> None:
    code, reference, _ = train(tmp_path, capsys, "reference", hyperparameters=HP)
    assert code == ExitCode.OK and reference.metrics is not None
    reference_rows = faults.rows
    assert reference_rows is not None and len(reference_rows) == 10  # one forward call of 8 (or 6) rows per step

    faults.reset()
    faults.oom_above_batch, faults.oom_after_calls = 2, 6  # six steps at batch 8, then batches above 2 fail
    code, result, lines = train(tmp_path, capsys, hyperparameters=HP)
    assert code == ExitCode.OK, result
    assert faults.ooms == 2, "8 failed, 4 failed, 2 ran"
    assert result.metrics is not None and result.metrics.steps == 10
    retries = [line for line in lines if line.startswith("CUDA out of memory")]
    assert retries == [
        "CUDA out of memory at step 6 with perDeviceBatchSize 8: retrying with perDeviceBatchSize 4 and "
        "gradientAccumulationSteps 2 (the same effective batch) from checkpoint-6",
        "CUDA out of memory at step 6 with perDeviceBatchSize 4: retrying with perDeviceBatchSize 2 and "
        "gradientAccumulationSteps 4 (the same effective batch) from checkpoint-6",
    ]
    events = progress(lines)
    trained = [(e.step, e.per_device_batch_size, e.gradient_accumulation_steps) for e in events if e.loss is not None]
    assert trained == [(s, 8, 1) for s in range(1, 7)] + [(s, 2, 4) for s in range(7, 11)]
    restarts = [(e.step, e.per_device_batch_size) for e in events if e.loss is None and e.eval_loss is None]
    assert restarts == [(0, 8), (6, 4), (6, 2)], "each attempt says where it starts and with which batch"
    # The same effective batch: steps 7-10 ran as 4 calls of 2 rows (the epoch's last step 3),
    # consuming as many rows as the uninterrupted run's steps 7-10 did.
    assert faults.rows is not None and faults.rows[:6] == reference_rows[:6]
    assert faults.rows[6:] == [2] * 15 and sum(faults.rows[6:]) == sum(reference_rows[6:])
    assert result.metrics.trained_tokens and result.metrics.trained_tokens > reference.metrics.trained_tokens * 0.8


def test_out_of_memory_at_batch_one_fails_with_advice(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      faults: Faults) -> None:
    faults.oom_above_batch = 0  # nothing fits
    code, result, _ = train(tmp_path, capsys, hyperparameters={**HP, "perDeviceBatchSize": 2})
    assert code == ExitCode.PERMANENT and result.reason == "OutOfMemory" and result.retryable is False
    assert result.message is not None
    assert "at perDeviceBatchSize 1 (retried down to perDeviceBatchSize 1)" in result.message
    assert "lower maxSeqLength, use QLoRA, or request a larger GPU" in result.message
    assert faults.ooms == 2 and not run_work(tmp_path).final.exists()


def test_out_of_memory_retry_can_be_turned_off(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               faults: Faults) -> None:
    faults.oom_above_batch = 4
    code, result, _ = train(tmp_path, capsys, hyperparameters=HP, guardrails={"oomRetry": False})
    assert code == ExitCode.PERMANENT and result.reason == "OutOfMemory" and faults.ooms == 1
    assert result.message is not None and "at perDeviceBatchSize 8," in result.message


def test_a_nan_loss_stops_the_run_as_diverged_keeping_the_last_good_checkpoint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], faults: Faults) -> None:
    faults.loss_factor, faults.loss_from_call = math.nan, 5
    # Saved every step, logged every second: checkpoint-5 is written before step 6 logs the NaN.
    code, result, lines = train(tmp_path, capsys, hyperparameters={**HP, "loggingSteps": 2, "saveSteps": 1})
    assert code == ExitCode.PERMANENT and result.reason == "Diverged" and result.retryable is False
    assert result.message is not None and "training diverged at step 6: the loss is nan" in result.message
    assert "the last good checkpoint is checkpoint-4" in result.message
    assert "checkpoint-5.diverged set aside" in result.message
    work = run_work(tmp_path)
    newest = work.newest_checkpoint()
    assert newest is not None and newest.name == "checkpoint-4"
    assert sorted(p.name for p in work.checkpoints.iterdir()) == ["checkpoint-4", "checkpoint-5.diverged"]
    assert max(e.step for e in progress(lines)) == 6, "training stopped at the divergence"
    assert not (work.root / "final").exists()
    _assert_finite_weights(newest)


def test_a_sustained_loss_spike_stops_the_run_after_patience(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             faults: Faults) -> None:
    faults.loss_factor, faults.loss_from_call = 50.0, 7
    code, result, lines = train(tmp_path, capsys, hyperparameters={**HP, "maxSteps": 20},
                                guardrails={"divergence": {"spikeFactor": 5, "window": 5, "patience": 3}})
    assert code == ExitCode.PERMANENT and result.reason == "Diverged"
    assert result.message is not None and "training diverged at step 9" in result.message
    assert "5x the recent median" in result.message and "since step 7" in result.message
    assert any("no checkpoint is saved until it comes back" in line for line in lines)
    newest = run_work(tmp_path).newest_checkpoint()
    assert newest is not None and newest.name == "checkpoint-6", "no checkpoint while the loss spiked"


def test_divergence_detection_can_be_turned_off(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                faults: Faults) -> None:
    faults.loss_factor, faults.loss_from_call = 50.0, 3
    code, result, _ = train(tmp_path, capsys, hyperparameters={**HP, "maxSteps": 8},
                            guardrails={"divergence": {"enabled": False}})
    assert code == ExitCode.OK, result


def _assert_finite_weights(checkpoint: Path) -> None:
    import torch
    from safetensors.torch import load_file

    tensors = load_file(str(checkpoint / "adapter_model.safetensors"))
    assert tensors and all(bool(torch.isfinite(t).all()) for t in tensors.values())
