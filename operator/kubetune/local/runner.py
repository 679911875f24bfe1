"""Run `kubetune-trainer` as a local process in place of a Pod.

The process gets what a Pod would: its config file, its environment, a result file in
place of the termination log. Its output is streamed line by line to a log file and to a
callback (the progress display); Ctrl-C is forwarded so the trainer can save a checkpoint.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from kubetune.api.contract import TERMINATION_MESSAGE_LIMIT

# Like `kubetune-trainer`, but works whether or not the console script is on PATH.
_TRAINER_BOOT = "import sys; from kubetune_trainer.cli import main; sys.exit(main())"
TRAINER_COMMAND_ENV = "KUBETUNE_TRAINER_COMMAND"


def trainer_command(override: str | None = None) -> list[str]:
    """The command that starts the trainer: `override` (shell words) or this Python's kubetune_trainer."""
    custom = override or os.environ.get(TRAINER_COMMAND_ENV)
    if custom:
        return shlex.split(custom)
    return [sys.executable, "-c", _TRAINER_BOOT]


class RunInterrupted(Exception):
    """The user pressed Ctrl-C while a step other than training ran: the whole command stops."""


@dataclass(frozen=True)
class ProcessOutcome:
    """How a process ended, as a Pod's container status would say it."""

    exit_code: int
    interrupted: bool
    termination_message: str | None  # the result file, capped like a termination log
    started_at: datetime
    finished_at: datetime
    signal: int | None = None  # set when the process was killed by a signal


class LocalProcess:
    """One run of the trainer or validator: start, stream output, forward interrupts, wait."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        result_path: Path,
        on_line: Callable[[str], None] = lambda _line: None,
        cwd: Path | None = None,
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.result_path = result_path
        self.on_line = on_line
        self.cwd = cwd
        self.interrupts = 0
        self._proc: subprocess.Popen[str] | None = None

    def run(self, *, append_log: bool = False) -> ProcessOutcome:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.result_path.parent.mkdir(parents=True, exist_ok=True)
        # A stale result from an earlier run must not be read as this run's.
        self.result_path.unlink(missing_ok=True)
        started = datetime.now(UTC)
        previous = self._install_signal_handlers()
        try:
            with self.log_path.open("a" if append_log else "w", encoding="utf-8") as log:
                if append_log and log.tell() > 0:
                    log.write(f"\n==== new run at {started.isoformat(timespec='seconds')} ====\n")
                # Its own process group: a terminal's Ctrl-C reaches only us, and we forward it exactly once.
                self._proc = subprocess.Popen(
                    self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8",
                    errors="replace", bufsize=1, process_group=0,
                )
                assert self._proc.stdout is not None
                for line in self._proc.stdout:
                    log.write(line)
                    log.flush()
                    self.on_line(line.rstrip("\n"))
                returncode = self._proc.wait()
        finally:
            self._restore_signal_handlers(previous)
        finished = datetime.now(UTC)
        killed_by = -returncode if returncode < 0 else None
        # A shell reports death by signal N as 128+N; a Pod's container status does the same.
        exit_code = 128 + killed_by if killed_by else returncode
        return ProcessOutcome(
            exit_code=exit_code,
            interrupted=self.interrupts > 0,
            termination_message=read_termination_message(self.result_path),
            started_at=started,
            finished_at=finished,
            signal=killed_by,
        )

    def interrupt(self) -> None:
        """First and second time: SIGINT (the trainer checkpoints, then hurries); third: SIGKILL."""
        self.interrupts += 1
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        if self.interrupts >= 3:
            proc.kill()
        else:
            proc.send_signal(signal.SIGINT)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGTERM and self._proc is not None and self._proc.poll() is None:
            self.interrupts += 1
            self._proc.send_signal(signal.SIGTERM)
            return
        self.interrupt()

    def _install_signal_handlers(self) -> dict[int, object] | None:
        if threading.current_thread() is not threading.main_thread():
            return None  # signals are delivered to the main thread only; callers there forward them
        previous: dict[int, object] = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, object] | None) -> None:
        for signum, handler in (previous or {}).items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


def read_termination_message(path: Path) -> str | None:
    """The result file as the kubelet would hand it over: at most 4096 bytes, None when absent."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    text = data[:TERMINATION_MESSAGE_LIMIT].decode("utf-8", errors="replace").strip()
    return text or None
