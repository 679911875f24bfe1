"""A run keeps its work across trainer processes: a stop by SIGTERM saves a checkpoint, a SIGKILL
loses only the steps after the last complete checkpoint, and the next start of the same run (a
new Pod: retry, eviction, preemption, suspend and resume) continues the step count from there.
Another run (another TuningJob, or another spec) on the same volume path shares nothing."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kubetune.api.contract import ExitCode, TrainerConfig, TrainerResult
from kubetune.api.progress import ProgressEvent, Stage, StageEvent, parse_line
from kubetune_trainer.cli import main
from kubetune_trainer.runfolder import identity_of
from kubetune_trainer.workdir import CHECKPOINT_COMPLETE, WorkDir, checkpoint_step
from support.toydata import generation_rows, write_jsonl
from support.trainer_config import data_entry, run_dir, trainer_config, write_config

pytestmark = pytest.mark.slow


def _start(config_path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "kubetune_trainer.cli", "train", "--config", str(config_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _events(lines: list[str]) -> tuple[list[ProgressEvent], list[StageEvent]]:
    events = [parse_line(line) for line in lines]
    return ([e for e in events if isinstance(e, ProgressEvent)], [e for e in events if isinstance(e, StageEvent)])


def _rerun(config_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["train", "--config", str(config_path)])
    return code, capsys.readouterr().out.splitlines()


def _config(tmp_path: Path, max_steps: int, save_steps: int) -> TrainerConfig:
    write_jsonl(tmp_path / "data" / "train.jsonl", generation_rows("alpaca", 64))
    return trainer_config(tmp_path, train=[data_entry("train.jsonl")],
                          hyperparameters={"maxSteps": max_steps, "loggingSteps": 1, "saveSteps": save_steps})


def test_sigterm_saves_a_checkpoint_and_the_next_run_resumes(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    # saveSteps far away: only the stop itself can have saved the checkpoint the rerun resumes from.
    config = _config(tmp_path, max_steps=40, save_steps=1000)
    path = write_config(tmp_path, config)
    process = _start(path)
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
    checkpoint = WorkDir(run_dir(tmp_path)).newest_checkpoint()
    assert checkpoint is not None, "the stop saved a checkpoint although saveSteps was not reached"
    stopped_at = checkpoint_step(checkpoint)
    assert 3 <= stopped_at < 40
    assert not (run_dir(tmp_path) / "final").exists()

    # The same config again, as a new Pod of the same Job would get it: it continues the step count.
    code, lines = _rerun(path, capsys)
    assert code == ExitCode.OK
    progress, stages = _events(lines)
    trained = [e.step for e in progress if e.loss is not None]
    assert trained == list(range(stopped_at + 1, 41))
    assert progress[0].step == stopped_at and progress[0].loss is None, "the resume is reported before a step"
    assert {(e.resumed_from_step, e.attempt) for e in progress} == {(stopped_at, 2)}
    assert any(s.stage is Stage.TRAINING and f"checkpoint step {stopped_at}" in s.message for s in stages)
    result = TrainerResult.model_validate_json((tmp_path / "result.json").read_text())
    assert result.metrics is not None and result.metrics.steps == 40
    assert result.metrics.base_eval_loss is not None, "the base evaluation survives the restart"
    assert not (run_dir(tmp_path) / "checkpoints").exists(), "checkpoints go once final/ stands for the run"


def test_sigkill_loses_only_the_steps_after_the_last_complete_checkpoint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No chance to save: the kubelet's SIGKILL after the grace period, an OOM kill, a lost node."""
    config = _config(tmp_path, max_steps=60, save_steps=5)
    path = write_config(tmp_path, config)
    process = _start(path)
    assert process.stdout is not None
    seen: list[str] = []
    work = WorkDir(tmp_path / "work" / "runs" / identity_of(config).folder_name)
    for line in process.stdout:
        seen.append(line)
        event = parse_line(line)
        first = work.newest_checkpoint()
        # Killed mid-run, a couple of steps past its first complete checkpoint: those steps are lost.
        if first is not None and isinstance(event, ProgressEvent) and event.step >= checkpoint_step(first) + 2:
            process.send_signal(signal.SIGKILL)
            break
    process.stdout.close()
    assert process.wait(timeout=60) == -signal.SIGKILL, "".join(seen[-20:])
    assert not (tmp_path / "result.json").exists(), "a killed trainer writes nothing"
    last_seen = max(e.step for e in _events(seen)[0])
    saved = work.newest_checkpoint()
    assert saved is not None
    saved_at = checkpoint_step(saved)
    assert 5 <= saved_at < last_seen < 55
    # A kill in the middle of writing a later checkpoint leaves one without its completion mark.
    torn = work.checkpoints / "checkpoint-55"
    shutil.copytree(saved, torn)
    (torn / CHECKPOINT_COMPLETE).unlink()

    code, lines = _rerun(path, capsys)
    assert code == ExitCode.OK, lines[-5:]
    progress, _ = _events(lines)
    trained = [e.step for e in progress if e.loss is not None]
    assert trained[0] == saved_at + 1 and trained[-1] == 60, "resumed from the checkpoint, not from step 0"
    assert {(e.resumed_from_step, e.attempt) for e in progress} == {(saved_at, 2)}
    assert "removed checkpoint-55: the previous attempt was stopped while saving it" in lines


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_runs_on_one_volume_path_share_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = _config(tmp_path, max_steps=4, save_steps=2)
    code, lines = _rerun(write_config(tmp_path, first), capsys)
    assert code == ExitCode.OK
    first_folder = tmp_path / "work" / "runs" / identity_of(first).folder_name
    first_model = _digests(first_folder / "final")
    delivered = tmp_path / "out" / "model" / "final"
    weights = "adapter_model.safetensors"
    # The output folder gets the model by hard link: no copy of the weights on the same volume.
    assert os.stat(delivered / weights).st_ino == os.stat(first_folder / "final" / weights).st_ino
    assert {k: v for k, v in _digests(delivered).items() if k != "kubetune-delivered.json"} == first_model

    # Another TuningJob (another uid), same spec, same claim and path: trains in its own folder.
    other = first.model_copy(update={"name": "other-job"})
    code, lines = _rerun(write_config(tmp_path, other), capsys)
    assert code == ExitCode.OK
    progress, stages = _events(lines)
    assert Stage.TRAINING in [s.stage for s in stages]
    assert [e.step for e in progress if e.loss is not None] == [1, 2, 3, 4]
    assert {e.resumed_from_step for e in progress} == {None} and {e.attempt for e in progress} == {1}
    other_folder = tmp_path / "work" / "runs" / identity_of(other).folder_name
    assert other_folder != first_folder and (other_folder / "final" / weights).is_file()
    assert not any("not reusing" in line for line in lines), "another TuningJob's runs are not its own"
    assert _digests(first_folder / "final") == first_model, "the first run's model is untouched"

    # The first TuningJob with a spec that trains another model: a clean start, said so.
    changed = first.model_copy(deep=True)
    changed.spec.hyperparameters.learning_rate = 1e-3
    code, lines = _rerun(write_config(tmp_path, changed), capsys)
    assert code == ExitCode.OK
    progress, _ = _events(lines)
    assert [e.step for e in progress if e.loss is not None] == [1, 2, 3, 4]
    assert f"not reusing {first_folder.name}: it was made from another spec of this TuningJob; this run starts " \
           f"clean in {identity_of(changed).folder_name}" in lines
    assert _digests(first_folder / "final") == first_model

    # The first spec again: its finished model is found, nothing is trained.
    code, lines = _rerun(write_config(tmp_path, first), capsys)
    assert code == ExitCode.OK
    progress, stages = _events(lines)
    assert progress == [] and Stage.TRAINING not in [s.stage for s in stages]
    assert sorted(p.name for p in (tmp_path / "work" / "runs").iterdir()) == sorted(
        identity_of(c).folder_name for c in (first, other, changed))
