"""Start a distributed run's training processes with torchrun, and speak for them.

`kubetune-trainer train` is the container's command on every node. With one process it
trains itself; when the config's LaunchPlan asks for more (nodes x processes per node) it
becomes a launcher: it runs torchrun (PyTorch's own launcher and c10d rendezvous), waits,
and turns what the processes left behind into the container's one result and exit code:

- every process writes its TrainerResult to a file of its own (RESULT_DIR_ENV); the ranks
  other than 0 end with rank 0's outcome (cli.py);
- the node that ran rank 0 writes that result to the termination log; another node writes its
  own there only when it failed (its cause, which node 0's processes may only have followed), and
  exits with its code;
- the exit code is the result's (0, 1 retryable, 2 permanent, 130 interrupted), so the Job's
  podFailurePolicy works as with one process (torchrun alone exits 1 for any failure);
- a process that died without a result (killed, a segfault, a rendezvous that never
  completed) becomes a retryable failure that says so.

Why not torchrun as the container command: its exit code would hide permanent failures
from the podFailurePolicy, and no process would be left to write a result for a rank
that was killed. SIGTERM/SIGINT are passed on to torchrun, which passes them on to the
ranks; they agree on a step, checkpoint together and stop (callbacks.StopRequest).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from pydantic import ValidationError

from kubetune.api.contract import FailureReason, TrainerConfig, TrainerResult, followed_another_failure
from kubetune.api.distributed import LaunchPlan
from kubetune_trainer.distributed import NODE_INDEX_ENV
from kubetune_trainer.events import Reporter
from kubetune_trainer.termination import (
    exit_code_of,
    fit_termination_message,
    summary_line,
    termination_json,
    write_termination_message,
)

RESULT_DIR_ENV = "KUBETUNE_RESULT_DIR"
# Nodes may start minutes apart (scheduling, pulling a large image): the rendezvous waits this long.
JOIN_TIMEOUT_SECONDS = 1800
# After a stop, the ranks finish their step and save a checkpoint together before torchrun kills them.
SHUTDOWN_TIMEOUT_SECONDS = 120
_RANK_FILE = "rank-{rank}.json"


def torchrun_argv(plan: LaunchPlan, config_path: Path | str, *, python: str = sys.executable) -> list[str]:
    """The torchrun command line for this node (the same on every node: torchrun assigns ranks)."""
    argv = [python, "-m", "torch.distributed.run", f"--nnodes={plan.nodes}",
            f"--nproc-per-node={plan.processes_per_node}"]
    if plan.nodes == 1:
        argv.append("--standalone")  # a private rendezvous on a free local port
    else:
        if not plan.rendezvous_endpoint:
            raise ValueError("a run on several nodes needs launch.rendezvousEndpoint")
        argv += ["--rdzv-backend=c10d", f"--rdzv-endpoint={plan.rendezvous_endpoint}", f"--rdzv-id={plan.run_id}",
                 f"--rdzv-conf=join_timeout={JOIN_TIMEOUT_SECONDS}"]
    # The Job retries failed attempts (and resumes them from a checkpoint): one place for retries.
    argv += ["--max-restarts=0", f"--shutdown-timeout={SHUTDOWN_TIMEOUT_SECONDS}",
             "-m", "kubetune_trainer.cli", "train", "--config", str(config_path)]
    return argv


def rank_result_path() -> str | None:
    """Where this rank writes its result, when a launcher started it (else None)."""
    folder = os.environ.get(RESULT_DIR_ENV)
    if not folder:
        return None
    return str(Path(folder) / _RANK_FILE.format(rank=os.environ.get("RANK", "0")))


def launch(config: TrainerConfig, config_path: Path, result_path: str, reporter: Reporter) -> int:
    plan = config.launch
    node = os.environ.get(NODE_INDEX_ENV, "0")
    where = f"node {node} of {plan.nodes}, " if plan.nodes > 1 else ""
    reporter.log(f"launching {plan.processes_per_node} training process(es) ({where}world size {plan.world_size}) "
                 "with torchrun")
    results_dir = Path(tempfile.mkdtemp(prefix="kubetune-ranks-"))
    try:
        run = _run_torchrun(torchrun_argv(plan, config_path), _child_env(plan, results_dir))
        outcome = collect(results_dir, run.exit_code, signalled=run.signalled, node_index=node,
                          processes_per_node=plan.processes_per_node)
    finally:
        shutil.rmtree(results_dir, ignore_errors=True)
    result = fit_termination_message(outcome.result, reporter.secrets)
    # Another node's Pod says how it failed too: when node 0's processes only followed that failure
    # (a collective broke under them), the operator tells the run by this node's cause.
    if outcome.speaks_for_run or result.status == "Failed":
        text = termination_json(result)
        if outcome.synthesized:  # the ranks printed nothing about it
            reporter.log(summary_line(result))
            reporter.log(text)
        write_termination_message(text, result_path)
    return exit_code_of(result)


def _child_env(plan: LaunchPlan, results_dir: Path) -> dict[str, str]:
    env = {**os.environ, RESULT_DIR_ENV: str(results_dir), "PYTHONUNBUFFERED": "1"}
    # torchrun would pin every process to one thread (and warn); share the cores instead.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    env.setdefault("OMP_NUM_THREADS", str(max(1, cores // plan.processes_per_node)))
    return env


@dataclass(frozen=True)
class _TorchrunExit:
    exit_code: int
    signalled: bool  # the launcher was asked to stop (and passed it on)


def _run_torchrun(argv: list[str], env: dict[str, str]) -> _TorchrunExit:
    signalled = False
    process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal signalled
        signalled = True
        if process.poll() is None:
            process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return _TorchrunExit(exit_code=code, signalled=signalled)


@dataclass(frozen=True)
class LaunchOutcome:
    result: TrainerResult
    speaks_for_run: bool  # this node writes the termination log (it ran rank 0, or nothing ran)
    synthesized: bool = False  # no process left a result: the launcher wrote this one


def collect(results_dir: Path, torchrun_exit: int, *, signalled: bool, node_index: str = "0",
            processes_per_node: int = 1) -> LaunchOutcome:
    """This node's outcome from the results its processes wrote (by rank)."""
    found = _read_results(results_dir)
    if not found:
        # Nothing ran to the end: the node with index 0 (or the only one) reports it.
        return LaunchOutcome(_no_result(torchrun_exit, signalled), speaks_for_run=node_index == "0",
                             synthesized=True)
    failures = {rank: r for rank, r in found.items() if r.status == "Failed"}
    # When torchrun tore the ranks down after one failed, the others say "Interrupted", or that a
    # collective broke under them (the failed rank left it): the first failure of another kind
    # is the cause (unless a stop really was asked for). An out-of-memory error on one rank so
    # ends the run as OutOfMemory, not as its peers' broken collective.
    causes = {rank: r for rank, r in failures.items() if not followed_another_failure(r)}
    if 0 in found:
        chosen = found[0]
        asked_to_stop = signalled and chosen.reason is FailureReason.INTERRUPTED
        if followed_another_failure(chosen) and not asked_to_stop and causes:
            chosen = causes[min(causes)]
        return LaunchOutcome(chosen, speaks_for_run=True)
    picked = causes or failures or found
    # torchrun numbers the ranks node by node (node g has ranks g x N .. g x N + N - 1): a rank
    # below N here means rank 0 ran here too and was killed before it wrote a result. This node
    # then still speaks for the run.
    return LaunchOutcome(picked[min(picked)], speaks_for_run=min(found) < processes_per_node)


def _read_results(folder: Path) -> dict[int, TrainerResult]:
    found: dict[int, TrainerResult] = {}
    for path in folder.glob(_RANK_FILE.format(rank="*")):
        try:
            rank = int(path.stem.split("-", 1)[1])
            found[rank] = TrainerResult.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, ValidationError):
            continue
    return found


def _no_result(torchrun_exit: int, signalled: bool) -> TrainerResult:
    if signalled:
        return TrainerResult(status="Failed", reason=FailureReason.INTERRUPTED, retryable=True,
                             message="stopped before the training processes got going; a new attempt starts over")
    return TrainerResult(
        status="Failed", reason=FailureReason.TRAINING_FAILED, retryable=True,
        message=f"the training processes ended without a result (torchrun exit code {torchrun_exit}): a process "
                "was killed (out of memory?) or the nodes did not meet at the rendezvous; see the log",
    )
