"""Distributed training on CPU (gloo): the same code path as GPUs, with torchrun doing the launching.

- 2 processes with batch B train to the loss curve of 1 process with batch 2B;
- two torchrun agents on loopback (2 "nodes") meet at a c10d rendezvous, train, and publish once;
- a stop on a 2-process run leaves one consistent checkpoint that a 2-process run resumes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kubetune.api.contract import ExitCode, TrainerConfig, TrainerResult
from kubetune.api.progress import ProgressEvent, StageEvent, parse_line
from kubetune_trainer.cli import main
from kubetune_trainer.workdir import WorkDir, checkpoint_step
from support.hubserver import HubServer, hub_server_fixture  # noqa: F401
from support.toydata import generation_rows, write_jsonl
from support.trainer_config import data_entry, run_dir, trainer_config, write_config
from support.trainer_process import TRAINER, free_port, run_agents, signal_when, start_trainer

pytestmark = pytest.mark.slow



def _config(tmp_path: Path, *, processes: int = 1, nodes: int = 1, endpoint: str | None = None,
            **hyperparameters: Any) -> TrainerConfig:
    write_jsonl(tmp_path / "data" / "train.jsonl", generation_rows("messages", 64))
    hp = {"maxSteps": 6, "loggingSteps": 1, "perDeviceBatchSize": 4, "saveSteps": 100, **hyperparameters}
    config = trainer_config(tmp_path, train=[data_entry("train.jsonl")], hyperparameters=hp)
    config.launch = config.launch.model_copy(update={"nodes": nodes, "processes_per_node": processes,
                                                     "rendezvous_endpoint": endpoint, "run_id": tmp_path.name})
    return config


def _env(**extra: str) -> dict[str, str]:
    # One thread per process: two processes share the two cores of the test machine.
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **extra}


def _losses(lines: list[str]) -> list[tuple[int, float]]:
    return [(e.step, e.loss) for e in map(parse_line, lines) if isinstance(e, ProgressEvent) and e.loss is not None]


def _result(path: Path) -> TrainerResult:
    return TrainerResult.model_validate_json(path.read_text(encoding="utf-8"))


def test_two_processes_follow_the_loss_curve_of_one_with_the_same_effective_batch(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """1 process x batch 8 against 2 gloo processes x batch 4: same seed, same rows per step.

    Both runs draw one global order of rows (the sampler is seeded by epoch and groups by the
    global batch) and the Trainer normalises the loss by the tokens of all ranks, so the curves
    differ only by the order of float sums (per-rank partial sums, then an all-reduce). Before
    any update that is ~1e-6 (step 1). Adam's first updates are near sign(gradient), which
    turns such noise into small visible differences later (measured: <= 0.012 over 6 steps
    at this learning rate, while the loss falls by ~0.3); the tolerance is a tenth of the fall.
    """
    single_dir, double_dir = tmp_path / "one", tmp_path / "two"
    single = _config(single_dir, perDeviceBatchSize=8)
    assert main(["train", "--config", str(write_config(single_dir, single))]) == ExitCode.OK
    one = _losses(capsys.readouterr().out.splitlines())

    double = _config(double_dir, processes=2, perDeviceBatchSize=4)
    run = subprocess.run([*TRAINER, "--config", str(write_config(double_dir, double))], env=_env(),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == ExitCode.OK, run.stdout[-3000:] + run.stderr[-3000:]
    two = _losses(run.stdout.splitlines())

    # Rank 0 alone prints progress: each step once.
    assert [s for s, _ in two] == [s for s, _ in one] == [1, 2, 3, 4, 5, 6]
    assert abs(one[0][1] - two[0][1]) < 1e-4
    fall = one[0][1] - min(loss for _, loss in one)
    assert fall > 0.1, one
    worst = max(abs(a - b) for (_, a), (_, b) in zip(one, two, strict=True))
    assert worst <= 0.1 * fall, (one, two)

    result = _result(double_dir / "result.json")
    assert result.status == "Succeeded" and result.metrics is not None and result.metrics.steps == 6
    assert "distributed: 2 processes, DDP" in run.stdout and "effective batch 8" in run.stdout
    card = (run_dir(double_dir) / "final" / "README.md").read_text(encoding="utf-8")
    assert "effectiveBatchSize" in card and "worldSize" in card


def test_two_nodes_meet_on_loopback_train_and_publish_once(tmp_path: Path, hub_server: HubServer) -> None:
    repo = f"{hub_server.user}/two-nodes"
    config = _config(tmp_path, nodes=2, processes=1, endpoint=f"127.0.0.1:{free_port()}", maxSteps=4)
    config.spec.output = config.spec.output.model_copy(update={"repo": repo, "endpoint": hub_server.endpoint})
    path = write_config(tmp_path, config)
    env = _env(**hub_server.client_env())
    codes, outputs = zip(*run_agents(path, env, tmp_path, 2), strict=True)
    assert list(codes) == [ExitCode.OK, ExitCode.OK], outputs

    written = sorted(p.name for p in tmp_path.glob("node*.json"))
    assert len(written) == 1, f"one node (the one running rank 0) writes the result: {written}"
    result = _result(tmp_path / written[0])
    assert result.status == "Succeeded" and result.model is not None and result.model.repo == repo
    pushes = [c for c in hub_server.commits(repo) if c.title.startswith("kubetune:")]
    assert len(pushes) == 1, "published once (the other commit is the repo's creation)"
    assert result.model.revision == pushes[0].sha
    steps = [step for out in outputs for step, _ in _losses(out.splitlines())]
    assert steps == [1, 2, 3, 4], "progress lines come from rank 0 only"
    assert sum("launching 1 training process(es) (node 0 of 2" in out for out in outputs) == 2
    card = hub_server.files(repo)["README.md"].decode()
    assert "worldSize" in card


def test_a_stop_checkpoints_every_rank_at_one_step_and_two_processes_resume(
        tmp_path: Path) -> None:
    # saveSteps far away: only the stop itself can have saved the checkpoint the rerun resumes from.
    config = _config(tmp_path, processes=2, maxSteps=12, saveSteps=1000)
    path = write_config(tmp_path, config)
    process = start_trainer(path, OMP_NUM_THREADS="1")
    # SIGTERM to the launcher, as the kubelet would send it.
    seen = signal_when(process, signal.SIGTERM, lambda event: event.step >= 2)
    assert process.stdout is not None
    seen += process.stdout.readlines()
    code = process.wait(timeout=300)
    assert code == ExitCode.INTERRUPTED, "".join(seen[-30:])
    result = _result(tmp_path / "result.json")
    assert result.reason == "Interrupted" and result.retryable is True
    # Marked complete (newest_checkpoint needs the marker) once every rank had written its part.
    checkpoint = WorkDir(run_dir(tmp_path)).newest_checkpoint()
    assert checkpoint is not None, "".join(seen[-30:])
    stopped_at = checkpoint_step(checkpoint)
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["global_step"] == stopped_at and 2 <= stopped_at < 12
    assert {p.name for p in checkpoint.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}

    # The same config again, as new Pods of the same Job would get it: both ranks resume.
    run = subprocess.run([*TRAINER, "--config", str(path)], env=_env(), capture_output=True, text=True, timeout=600)
    assert run.returncode == ExitCode.OK, run.stdout[-3000:] + run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert [s for s, _ in _losses(lines)] == list(range(stopped_at + 1, 13))
    events = [e for e in map(parse_line, lines) if isinstance(e, ProgressEvent)]
    assert {(e.resumed_from_step, e.attempt) for e in events} == {(stopped_at, 2)}
    assert any(isinstance(e, StageEvent) and checkpoint.name in e.message for e in map(parse_line, lines))
    assert _result(tmp_path / "result.json").status == "Succeeded"


def test_local_mode_runs_several_cpu_processes_with_the_same_code_path(tmp_path: Path) -> None:
    from test_local_run import DATA, QUICKSTART, describe_value

    manifest = tmp_path / "short.yaml"
    manifest.write_text(QUICKSTART.read_text().replace("epochs: 12", "maxSteps: 4")
                        .replace("loggingSteps: 5", "loggingSteps: 2").replace("type: Full", "type: LoRA"))
    log_path = tmp_path / "out" / "default" / "quickstart" / "trainer.log"
    command = [sys.executable, "-m", "kubetune", "run", "-f", str(manifest), "--volume", f"quickstart-data={DATA}",
               "--workdir", "out", "--processes", "2"]
    run = subprocess.Popen(command, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, start_new_session=True)
    try:
        out, _ = run.communicate(timeout=480)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        out, _ = run.communicate()
        log = log_path.read_text() if log_path.exists() else "(no trainer log)"
        pytest.fail(f"kubetune run --processes 2 did not finish in 480 s:\n{out[-3000:]}\n--- trainer.log:\n"
                    f"{log[-5000:]}")
    assert run.returncode == 0, out[-3000:]
    assert describe_value(out, "Phase") == "Succeeded"
    assert describe_value(out, "World Size") == "2"
    assert describe_value(out, "Effective Batch Size") == "32"  # 16 per device x 2 processes
    assert "note: resources ask for 1 training process(es)" in out
    log = log_path.read_text()
    assert "launching 2 training process(es)" in log and "distributed: 2 processes, DDP" in log
    assert [s for s, _ in _losses(log.splitlines())] == [2, 4], "one progress line per step, from rank 0"


def test_a_permanent_failure_keeps_its_exit_code_through_torchrun(tmp_path: Path) -> None:
    """torchrun exits 1 for any failed process; the launcher passes on the ranks' own verdict, so
    the Job's podFailurePolicy still fails a run with bad data at once instead of retrying it."""
    config = _config(tmp_path, processes=2, maxSeqLength=16)  # no answer survives truncation to 16 tokens
    run = subprocess.run([*TRAINER, "--config", str(write_config(tmp_path, config))], env=_env(),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == ExitCode.PERMANENT, run.stdout[-3000:] + run.stderr[-3000:]
    result = _result(tmp_path / "result.json")
    assert result.reason == "DatasetInvalid" and result.retryable is False
    assert "maxSeqLength 16" in (result.message or "")


def test_a_rerun_that_only_publishes_pushes_once_from_rank_zero(tmp_path: Path, hub_server: HubServer) -> None:
    # The push fails for good (one attempt, refused): final/ is kept; the next attempt only publishes it.
    repo = f"{hub_server.user}/rerun-push"
    config = _config(tmp_path, processes=2, maxSteps=2)
    config.spec.output = config.spec.output.model_copy(update={"repo": repo, "endpoint": hub_server.endpoint})
    path = write_config(tmp_path, config)
    env = _env(**hub_server.client_env(), KUBETUNE_PUSH_ATTEMPTS="1", KUBETUNE_PUSH_BACKOFF_SECONDS="0")
    hub_server.fail_next_commits(1)
    first = subprocess.run([*TRAINER, "--config", str(path)], env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == ExitCode.RETRYABLE, first.stdout[-3000:] + first.stderr[-3000:]
    assert _result(tmp_path / "result.json").reason == "PushFailed"

    again = subprocess.run([*TRAINER, "--config", str(path)], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == ExitCode.OK, again.stdout[-3000:] + again.stderr[-3000:]
    assert "not training again" in again.stdout
    pushes = [c for c in hub_server.commits(repo) if c.title.startswith("kubetune:")]
    assert len(pushes) == 1, f"one process publishes the finished model, not every one: {[c.sha for c in pushes]}"
    assert _result(tmp_path / "result.json").model.revision == pushes[0].sha  # type: ignore[union-attr]
