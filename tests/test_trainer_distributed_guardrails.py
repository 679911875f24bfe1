"""The guardrails in a distributed run on CPU (2 gloo processes under torchrun), with injected faults.

- CUDA out of memory on one rank: the in-process retry is not attempted (the other rank waits
  inside a collective the failed one never joins); every process ends, none hangs, and the run
  fails as OutOfMemory (permanent), saying which batch to set;
- a NaN loss on one rank: every rank's divergence detector hears rank 0's logged loss, so all
  stop at the same step, and the last good checkpoint is kept with the bad one set aside.

Faults are injected into the processes torchrun starts by tests/support/rankfaults/sitecustomize.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kubetune.api.contract import ExitCode, TrainerResult
from kubetune.api.progress import ProgressEvent, parse_line
from kubetune_trainer.workdir import WorkDir
from support.toydata import generation_rows, write_jsonl
from support.trainer_config import data_entry, run_dir, trainer_config, write_config

pytestmark = pytest.mark.slow

TRAINER = [sys.executable, "-m", "kubetune_trainer.cli", "train"]
FAULTS = Path(__file__).parent / "support" / "rankfaults"


def _run(tmp_path: Path, faults: dict[str, Any], **hyperparameters: Any) -> tuple[subprocess.CompletedProcess[str],
                                                                                 TrainerResult]:
    write_jsonl(tmp_path / "data" / "train.jsonl", generation_rows("alpaca", 40))
    hp = {"maxSteps": 10, "perDeviceBatchSize": 4, "loggingSteps": 1, "saveSteps": 2, **hyperparameters}
    config = trainer_config(tmp_path, train=[data_entry("train.jsonl")], hyperparameters=hp)
    config.launch = config.launch.model_copy(update={"processes_per_node": 2, "run_id": tmp_path.name})
    path = write_config(tmp_path, config)
    # The fault hooks first (sitecustomize), then the tests folder they import support.modelhooks from.
    python_path = os.pathsep.join(p for p in (str(FAULTS), str(FAULTS.parents[1]), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": python_path,
           "KUBETUNE_TEST_FAULTS": json.dumps(faults)}
    # A hang (a rank waiting for one that is gone) would show as this timeout.
    run = subprocess.run([*TRAINER, "--config", str(path)], env=env, capture_output=True, text=True, timeout=600)
    return run, TrainerResult.model_validate_json((tmp_path / "result.json").read_text(encoding="utf-8"))


def _steps(stdout: str) -> list[int]:
    """Steps of the progress lines with a loss (a NaN loss is reported without one)."""
    return [e.step for e in map(parse_line, stdout.splitlines()) if isinstance(e, ProgressEvent) and e.loss is not None]


def _last_step(stdout: str) -> int:
    return max(e.step for e in map(parse_line, stdout.splitlines()) if isinstance(e, ProgressEvent))


def test_out_of_memory_on_one_rank_ends_every_process_as_out_of_memory_without_a_retry(tmp_path: Path) -> None:
    run, result = _run(tmp_path, {"ranks": [1], "oomAfterCalls": 3})
    output = run.stdout[-3000:] + run.stderr[-3000:]
    assert run.returncode == ExitCode.PERMANENT, output
    assert result.reason == "OutOfMemory" and result.retryable is False, result
    assert result.message is not None and "a run of 2 processes is not retried in place" in result.message
    assert "set perDeviceBatchSize 2 and gradientAccumulationSteps 2" in result.message
    assert "retrying with perDeviceBatchSize" not in run.stdout, "no rank retried on its own"
    assert _steps(run.stdout) == [1, 2, 3], "rank 1's fourth training step ran out of memory"


def test_a_nan_loss_on_one_rank_stops_every_rank_at_the_same_step_keeping_the_last_good_checkpoint(
        tmp_path: Path) -> None:
    # Saved every step, logged every second: checkpoint-5 is written before step 6 logs the NaN.
    run, result = _run(tmp_path, {"ranks": [1], "lossFactor": "nan", "lossFromCall": 5},
                       loggingSteps=2, saveSteps=1)
    output = run.stdout[-3000:] + run.stderr[-3000:]
    assert run.returncode == ExitCode.PERMANENT, output
    assert result.reason == "Diverged" and result.retryable is False, result
    assert result.message is not None and "training diverged at step 6: the loss is nan" in result.message
    assert "the last good checkpoint is checkpoint-4" in result.message
    # Rank 1 (quiet: rank 0 speaks for the run) says where it stopped: the same step.
    assert "[rank 1/2 (node 0, local rank 1)] failed (Diverged): training diverged at step 6" in run.stderr, output
    assert _last_step(run.stdout) == 6, "training stopped at the divergence"
    assert _steps(run.stdout) == [2, 4], "the NaN of step 6 is logged without a loss"
    work = WorkDir(run_dir(tmp_path))
    newest = work.newest_checkpoint()
    assert newest is not None and newest.name == "checkpoint-4"
    assert sorted(p.name for p in work.checkpoints.iterdir()) == ["checkpoint-4", "checkpoint-5.diverged"]
    assert {p.name for p in newest.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    assert not work.final.exists()
