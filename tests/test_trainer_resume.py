"""A trainer stopped by SIGTERM saves a checkpoint; the next run resumes and continues the step count."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kubetune.api.contract import ExitCode, TrainerResult
from kubetune.api.progress import ProgressEvent, StageEvent, parse_line
from kubetune_trainer.cli import main
from kubetune_trainer.workdir import WorkDir
from support.toydata import generation_rows, write_jsonl
from support.trainer_config import data_entry, trainer_config, write_config

pytestmark = pytest.mark.slow


def test_sigterm_saves_a_checkpoint_and_the_next_run_resumes(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    write_jsonl(tmp_path / "data" / "train.jsonl", generation_rows("alpaca", 64))
    config = trainer_config(tmp_path, train=[data_entry("train.jsonl")],
                            hyperparameters={"maxSteps": 5000, "loggingSteps": 1, "saveSteps": 1000})
    path = write_config(tmp_path, config)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "kubetune_trainer.cli", "train", "--config", str(path)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert process.stdout is not None
    seen: list[str] = []
    for line in process.stdout:
        seen.append(line)
        event = parse_line(line)
        if isinstance(event, ProgressEvent) and event.step >= 3:
            process.send_signal(signal.SIGTERM)
            break
    seen += process.stdout.readlines()
    code = process.wait(timeout=120)
    result = TrainerResult.model_validate_json((tmp_path / "result.json").read_text())
    assert code == ExitCode.INTERRUPTED, "".join(seen[-20:])
    assert result.reason == "Interrupted" and result.retryable is True
    checkpoint = WorkDir(tmp_path / "work").newest_checkpoint()
    assert checkpoint is not None, "the stop saved a checkpoint although saveSteps was not reached"
    stopped_at = int(checkpoint.name.split("-")[1])
    assert 3 <= stopped_at < 5000
    assert not (tmp_path / "work" / "final").exists()

    resumed = config.model_copy(deep=True)
    resumed.spec.hyperparameters.max_steps = stopped_at + 4
    assert main(["train", "--config", str(write_config(tmp_path, resumed))]) == ExitCode.OK
    lines = capsys.readouterr().out.splitlines()
    steps = [e.step for e in map(parse_line, lines) if isinstance(e, ProgressEvent) and e.loss is not None]
    assert steps == list(range(stopped_at + 1, stopped_at + 5))
    assert any(isinstance(e, StageEvent) and checkpoint.name in e.message for e in map(parse_line, lines))
    result = TrainerResult.model_validate_json((tmp_path / "result.json").read_text())
    assert result.metrics is not None and result.metrics.steps == stopped_at + 4
    assert result.metrics.base_eval_loss is not None, "the base evaluation survives the restart"
