"""Durable DPO runs: a stopped preference run keeps a complete checkpoint and the next attempt resumes
from it, with the same base scores, as a supervised run does (tests/test_trainer_resume.py)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from kubetune.api.contract import ExitCode, TrainerResult
from kubetune.api.progress import ProgressEvent, Stage, StageEvent, parse_line
from kubetune_trainer.cli import main
from kubetune_trainer.training.dpo import BASE_SCORES_FILE
from kubetune_trainer.workdir import CHECKPOINT_COMPLETE, WorkDir, checkpoint_step
from support.toydata import preference_rows, write_jsonl
from support.trainer_config import data_entry, run_dir, trainer_config, write_config
from support.trainer_process import signal_when, start_trainer

pytestmark = pytest.mark.slow


def test_a_stopped_dpo_run_resumes_from_its_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_jsonl(tmp_path / "data" / "pairs.jsonl", preference_rows("standard", 60))
    # saveSteps far away: only the stop itself can have saved the checkpoint the rerun resumes from.
    config = trainer_config(tmp_path, train=[data_entry("pairs.jsonl")], objective="dpo",
                            hyperparameters={"maxSteps": 30, "loggingSteps": 1, "saveSteps": 1000,
                                             "perDeviceBatchSize": 2, "learningRate": 5e-3})
    path = write_config(tmp_path, config)
    process = start_trainer(path)
    seen = signal_when(process, signal.SIGTERM, lambda event: event.step >= 3)
    assert process.stdout is not None
    seen += process.stdout.readlines()
    assert process.wait(timeout=120) == ExitCode.INTERRUPTED, "".join(seen[-20:])
    result = TrainerResult.model_validate_json((tmp_path / "result.json").read_text())
    assert result.reason == "Interrupted" and result.retryable is True
    checkpoint = WorkDir(run_dir(tmp_path)).newest_checkpoint()
    assert checkpoint is not None, "the stop saved no complete checkpoint"
    assert (checkpoint / CHECKPOINT_COMPLETE).is_file()
    stopped_at = checkpoint_step(checkpoint)
    assert 3 <= stopped_at < 30
    assert (run_dir(tmp_path) / BASE_SCORES_FILE).is_file(), "the base scores are kept for the next attempt"

    code = main(["train", "--config", str(path)])
    lines = capsys.readouterr().out.splitlines()
    assert code == ExitCode.OK, lines[-10:]
    events = [parse_line(line) for line in lines]
    progress = [e for e in events if isinstance(e, ProgressEvent)]
    stages = [e for e in events if isinstance(e, StageEvent)]
    trained = [e.step for e in progress if e.loss is not None]
    assert trained == list(range(stopped_at + 1, 31)), "resumed after the checkpoint, not from step 0"
    assert {(e.resumed_from_step, e.attempt) for e in progress} == {(stopped_at, 2)}
    assert any(s.stage is Stage.TRAINING and f"checkpoint step {stopped_at}" in s.message for s in stages)
    assert not any(s.stage is Stage.EVALUATING and "with the base model" in s.message for s in stages), \
        "the base was scored once, by the first attempt"
    result = TrainerResult.model_validate_json((tmp_path / "result.json").read_text())
    assert result.metrics is not None and result.metrics.steps == 30
    assert result.metrics.base_preference_accuracy is not None
