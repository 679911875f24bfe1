"""The TrainerResult written to the termination message: compact, redacted, at most 4096 bytes."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from kubetune.api.contract import TERMINATION_LOG, TERMINATION_MESSAGE_LIMIT, ExitCode, FailureReason, TrainerResult
from kubetune.api.redact import redact


def result_json(result: TrainerResult) -> str:
    return json.dumps(result.to_wire(), separators=(",", ":"), sort_keys=True)


def fit_result(result: TrainerResult, secrets: Iterable[str | None] = (),
               limit: int = TERMINATION_MESSAGE_LIMIT) -> TrainerResult:
    """Redact the message and shorten it (then drop the longest optional parts) until the JSON fits."""
    secrets = list(secrets)
    message = redact(result.message, secrets) if result.message else None
    if message is not None and len(message) > 2048:
        message = message[:2047] + "…"
    fitted = result.model_copy(update={"message": message})
    while len(result_json(fitted).encode()) > limit and fitted.message and len(fitted.message) > 80:
        shorter = fitted.message[: len(fitted.message) * 3 // 4] + "…"
        fitted = fitted.model_copy(update={"message": shorter})
    if len(result_json(fitted).encode()) > limit and fitted.model is not None:
        fitted = fitted.model_copy(update={"model": fitted.model.model_copy(update={"url": None})})
    return fitted


def write_result(text: str, path: str) -> None:
    # Outside a Pod the default path does not exist; creating files under /dev is not ours to do.
    if path == TERMINATION_LOG and not os.path.exists(path):
        return
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text, encoding="utf-8")
    except OSError as error:
        print(f"warning: cannot write the result to {path}: {error}", file=sys.stderr, flush=True)


def exit_code_of(result: TrainerResult) -> int:
    """The process exit code a result stands for (the Job's podFailurePolicy switches on it)."""
    if result.status == "Succeeded":
        return ExitCode.OK
    if result.reason is FailureReason.INTERRUPTED:
        return ExitCode.INTERRUPTED
    return ExitCode.RETRYABLE if result.retryable else ExitCode.PERMANENT
