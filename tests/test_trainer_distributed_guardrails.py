"""The guardrails in a distributed run on CPU (2 gloo processes under torchrun), with injected faults.

- CUDA out of memory on one rank: the in-process retry is not attempted (the other rank waits
  inside a collective the failed one never joins); every process ends, none hangs, and the run
  fails as OutOfMemory (permanent), saying which batch to set;
- a NaN loss on one rank: every rank's divergence detector hears rank 0's logged loss, so all
  stop at the same step, and the last good checkpoint is kept with the bad one set aside;
- out of memory on another node (two torchrun agents on loopback): that node writes its own
  result, and the run is told by it (OutOfMemory), not by rank 0's broken collective.

Faults are injected into the processes torchrun starts by tests/support/rankfaults/sitecustomize.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kubetune.api.contract import ExitCode, FailureReason, TrainerResult, followed_another_failure
from kubetune.api.progress import ProgressEvent, parse_line
from kubetune.status import RunObservation, derive_status
from kubetune.status.observe import JobObservation, failure_elsewhere, observe_pods
from kubetune_trainer.termination import exit_code_of
from kubetune_trainer.workdir import WorkDir
from support.toydata import generation_rows, write_jsonl
from support.trainer_config import data_entry, run_dir, trainer_config, write_config
from support.trainer_process import TRAINER, free_port, run_agents

pytestmark = pytest.mark.slow

FAULTS = Path(__file__).parent / "support" / "rankfaults"


def _prepare(tmp_path: Path, faults: dict[str, Any], *, nodes: int = 1, processes: int = 2,
             endpoint: str | None = None, **hyperparameters: Any) -> tuple[Path, dict[str, str]]:
    """The config file of a run with `faults`, and the environment its launchers start in."""
    write_jsonl(tmp_path / "data" / "train.jsonl", generation_rows("alpaca", 40))
    hp = {"maxSteps": 10, "perDeviceBatchSize": 4, "loggingSteps": 1, "saveSteps": 2, **hyperparameters}
    config = trainer_config(tmp_path, train=[data_entry("train.jsonl")], hyperparameters=hp)
    config.launch = config.launch.model_copy(update={"nodes": nodes, "processes_per_node": processes,
                                                     "rendezvous_endpoint": endpoint, "run_id": tmp_path.name})
    # The fault hooks first (sitecustomize), then the tests folder they import support.modelhooks from.
    python_path = os.pathsep.join(p for p in (str(FAULTS), str(FAULTS.parents[1]), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": python_path,
           "KUBETUNE_TEST_FAULTS": json.dumps(faults)}
    return write_config(tmp_path, config), env


def _run(tmp_path: Path, faults: dict[str, Any], **hyperparameters: Any) -> tuple[subprocess.CompletedProcess[str],
                                                                                 TrainerResult]:
    path, env = _prepare(tmp_path, faults, **hyperparameters)
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


def test_out_of_memory_on_another_node_is_that_nodes_result_and_the_runs_cause(tmp_path: Path) -> None:
    # Two torchrun agents on loopback, one process each: rank 1 runs out of memory; rank 0's
    # collective breaks under it. torchrun decides which agent runs which rank.
    path, env = _prepare(tmp_path, {"ranks": [1], "oomAfterCalls": 3}, nodes=2, processes=1,
                         endpoint=f"127.0.0.1:{free_port()}")
    codes, outputs = zip(*run_agents(path, env, tmp_path, 2), strict=True)
    assert ExitCode.OK not in codes, outputs
    # Both nodes wrote a termination message: rank 0's node the run's result (it only followed),
    # the other node its own failure, the cause.
    written = [TrainerResult.model_validate_json(p.read_text(encoding="utf-8"))
               for p in sorted(tmp_path.glob("node*.json"))]
    assert len(written) == 2, outputs
    [followed] = [r for r in written if followed_another_failure(r)]
    [cause] = [r for r in written if not followed_another_failure(r)]
    assert followed.reason is FailureReason.TRAINING_FAILED
    assert cause.reason is FailureReason.OUT_OF_MEMORY and "set perDeviceBatchSize 2" in (cause.message or "")

    # As the operator sees the Indexed Job's two Pods (index 0 runs rank 0): the run fails as OutOfMemory.
    def pod(index: int, result: TrainerResult) -> dict[str, Any]:
        return {"metadata": {"name": f"tj-train-{index}", "creationTimestamp": "2026-12-01T00:00:00Z",
                             "annotations": {"batch.kubernetes.io/job-completion-index": str(index)}},
                "status": {"containerStatuses": [{"name": "trainer", "state": {"terminated": {
                    "exitCode": exit_code_of(result), "message": result.model_dump_json(by_alias=True)}}}]}}

    pods = [pod(0, followed), pod(1, cause)]
    status = derive_status(None, RunObservation(
        generation=1, job=JobObservation(name="tj-train", failed=1, failure_reason="PodFailurePolicy"),
        pod=observe_pods(pods, "trainer"), failure_elsewhere=failure_elsewhere(pods, "trainer")),
        now=datetime.now(UTC), log_tail_lines=5)
    assert status.error is not None and status.error.reason == "OutOfMemory", status.error
    assert status.error.message.startswith("on node 1: the GPU ran out of memory")
