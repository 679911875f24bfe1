"""The launcher's pure parts: the torchrun command line, and which result and exit code a node reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune.api.contract import PEER_FAILURE, ExitCode, FailureReason, TrainerResult, followed_another_failure
from kubetune.api.distributed import LaunchPlan
from kubetune_trainer import distributed
from kubetune_trainer.launcher import collect, rank_result_path, torchrun_argv
from kubetune_trainer.termination import exit_code_of, termination_json


def test_one_node_uses_a_private_rendezvous() -> None:
    argv = torchrun_argv(LaunchPlan(processes_per_node=8), "/etc/kubetune/config.json", python="python")
    assert argv[:3] == ["python", "-m", "torch.distributed.run"]
    assert "--nnodes=1" in argv and "--nproc-per-node=8" in argv and "--standalone" in argv
    assert not any(a.startswith("--rdzv") for a in argv)
    assert argv[-5:] == ["-m", "kubetune_trainer.cli", "train", "--config", "/etc/kubetune/config.json"]
    assert "--max-restarts=0" in argv  # retries are the Job's


def test_several_nodes_meet_at_pod_zero_with_c10d() -> None:
    plan = LaunchPlan(nodes=4, processes_per_node=8, rendezvous_endpoint="run-train-0.run-nodes:29500",
                      run_id="uid-1")
    argv = torchrun_argv(plan, "/etc/kubetune/config.json")
    assert {"--nnodes=4", "--nproc-per-node=8", "--rdzv-backend=c10d", "--rdzv-endpoint=run-train-0.run-nodes:29500",
            "--rdzv-id=uid-1"} <= set(argv)
    assert "--standalone" not in argv
    with pytest.raises(ValueError, match="rendezvousEndpoint"):
        torchrun_argv(LaunchPlan(nodes=2), "c.json")


def _write(folder: Path, rank: int, result: TrainerResult) -> None:
    (folder / f"rank-{rank}.json").write_text(termination_json(result), encoding="utf-8")


OK = TrainerResult(status="Succeeded")
PUSH_FAILED = TrainerResult(status="Failed", reason=FailureReason.PUSH_FAILED, message="push", retryable=True)
BAD_DATA = TrainerResult(status="Failed", reason=FailureReason.DATASET_INVALID, message="bad", retryable=False)
STOPPED = TrainerResult(status="Failed", reason=FailureReason.INTERRUPTED, message="stopped", retryable=True)


def test_the_node_with_rank_zero_speaks_for_the_run(tmp_path: Path) -> None:
    _write(tmp_path, 0, PUSH_FAILED)
    _write(tmp_path, 1, PUSH_FAILED)
    outcome = collect(tmp_path, 1, signalled=False)
    assert outcome.speaks_for_run and outcome.result == PUSH_FAILED
    assert exit_code_of(outcome.result) == ExitCode.RETRYABLE


def test_other_nodes_do_not_speak_for_the_run_and_exit_with_their_code(tmp_path: Path) -> None:
    _write(tmp_path, 3, BAD_DATA)
    _write(tmp_path, 2, OK)
    outcome = collect(tmp_path, 1, signalled=False, node_index="1")
    assert not outcome.speaks_for_run
    assert outcome.result == BAD_DATA and exit_code_of(outcome.result) == ExitCode.PERMANENT


def test_a_peer_torn_down_after_a_failure_does_not_hide_the_cause(tmp_path: Path) -> None:
    # torchrun stops rank 0 (SIGTERM: "Interrupted") because rank 1 failed for good.
    _write(tmp_path, 0, STOPPED)
    _write(tmp_path, 1, BAD_DATA)
    assert collect(tmp_path, 1, signalled=False).result == BAD_DATA
    # A stop that was asked for is a stop.
    assert collect(tmp_path, 1, signalled=True).result == STOPPED


def test_an_out_of_memory_rank_is_the_cause_not_its_peers_broken_collective(tmp_path: Path) -> None:
    # Rank 1 ran out of GPU memory and left; rank 0's all-reduce broke under it.
    peer = TrainerResult(status="Failed", reason=FailureReason.TRAINING_FAILED, retryable=True,
                         message=f"{PEER_FAILURE} (see its log): Connection closed by peer")
    oom = TrainerResult(status="Failed", reason=FailureReason.OUT_OF_MEMORY, retryable=False,
                        message="the GPU ran out of memory at perDeviceBatchSize 8")
    _write(tmp_path, 0, peer)
    _write(tmp_path, 1, oom)
    outcome = collect(tmp_path, 1, signalled=False)
    assert outcome.speaks_for_run and outcome.result == oom
    assert exit_code_of(outcome.result) == ExitCode.PERMANENT, "every Pod fails alike, no retry of the same batch"
    # Alone, a broken collective is still what the node reports (the cause was on another node).
    (tmp_path / "rank-1.json").unlink()
    assert collect(tmp_path, 1, signalled=False).result == peer
    # Rank 0 killed (no result) after rank 1 ran out of memory on the same node: it still reports the cause.
    (tmp_path / "rank-0.json").unlink()
    _write(tmp_path, 1, oom)
    outcome = collect(tmp_path, 1, signalled=False, processes_per_node=2)
    assert outcome.speaks_for_run and outcome.result == oom
    # Rank 1 alone on its node (one process per node): rank 0 ran on another node, which speaks.
    assert not collect(tmp_path, 1, signalled=False, processes_per_node=1).speaks_for_run


def test_no_result_at_all_becomes_a_retryable_failure_on_pod_zero_only(tmp_path: Path) -> None:
    outcome = collect(tmp_path, 1, signalled=False, node_index="0")
    assert outcome.speaks_for_run and outcome.synthesized
    assert outcome.result.reason is FailureReason.TRAINING_FAILED and outcome.result.retryable
    assert "torchrun exit code 1" in (outcome.result.message or "")
    assert not collect(tmp_path, 1, signalled=False, node_index="2").speaks_for_run
    assert collect(tmp_path, 130, signalled=True).result.reason is FailureReason.INTERRUPTED


def test_each_rank_writes_its_own_result_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBETUNE_RESULT_DIR", raising=False)
    assert rank_result_path() is None
    monkeypatch.setenv("KUBETUNE_RESULT_DIR", str(tmp_path))
    monkeypatch.setenv("RANK", "5")
    assert rank_result_path() == str(tmp_path / "rank-5.json")


def test_ranks_come_from_torchruns_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    distributed.ranks.cache_clear()
    try:
        with monkeypatch.context() as env:
            for name, value in {"RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4",
                                "GROUP_RANK": "1"}.items():
                env.setenv(name, value)
            me = distributed.ranks()
            assert (me.rank, me.local_rank, me.world_size, me.node_rank) == (5, 1, 8, 1)
            assert me.distributed and not me.is_main and not me.is_local_main
            gloo = RuntimeError("[gloo/transport/tcp/pair.cc:553] Connection closed by peer [10.0.0.2]:2483")
            assert distributed.is_peer_failure(gloo)
            assert not distributed.is_peer_failure(ValueError("shape mismatch"))
        distributed.ranks.cache_clear()
        assert not distributed.ranks().distributed  # the test process itself is one process
    finally:
        distributed.ranks.cache_clear()


def test_what_only_followed_another_failure() -> None:
    peer = TrainerResult(status="Failed", reason=FailureReason.TRAINING_FAILED, retryable=True,
                         message=f"{PEER_FAILURE} (see its log): Connection reset by peer")
    assert followed_another_failure(peer) and followed_another_failure(STOPPED)
    assert not followed_another_failure(BAD_DATA) and not followed_another_failure(OK)
