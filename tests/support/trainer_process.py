"""The trainer as its own process, as a Pod runs it, for tests that stop it from outside."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from kubetune.api.progress import ProgressEvent, parse_line


def start_trainer(config_path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "kubetune_trainer.cli", "train", "--config", str(config_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


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
