"""The trainer as its own process, as a Pod runs it, for tests that stop it from outside."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from kubetune.api.progress import ProgressEvent, parse_line

TRAINER = [sys.executable, "-m", "kubetune_trainer.cli", "train"]


def start_trainer(config_path: Path, **env: str) -> subprocess.Popen[str]:
    """`kubetune-trainer train --config`, its output (stderr too) on a pipe; `env` added to the environment."""
    return subprocess.Popen([*TRAINER, "--config", str(config_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **env})


def free_port() -> int:
    """A loopback port nothing listens on now (for a rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_agents(config_path: Path, env: dict[str, str], folder: Path, nodes: int) -> list[tuple[int, str]]:
    """One trainer per node of a multi-node config, side by side on this machine (torchrun agents meeting
    on loopback), each writing its termination message to folder/node<n>.json; (exit code, output) of each."""
    agents = [subprocess.Popen([*TRAINER, "--config", str(config_path), "--result-path", str(folder / f"node{n}.json")],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for n in range(nodes)]
    outputs = [agent.communicate(timeout=600)[0] for agent in agents]
    return [(agent.returncode, output) for agent, output in zip(agents, outputs, strict=True)]


def signal_when(process: subprocess.Popen[str], sig: signal.Signals,
                when: Callable[[ProgressEvent], bool]) -> list[str]:
    """Read the trainer's lines until a progress line satisfies `when`, then send `sig`; the lines read."""
    assert process.stdout is not None
    seen: list[str] = []
    for line in process.stdout:
        seen.append(line)
        event = parse_line(line)
        if isinstance(event, ProgressEvent) and when(event):
            process.send_signal(sig)
            break
    return seen
