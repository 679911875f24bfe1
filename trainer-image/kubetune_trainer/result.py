"""The TrainerResult written to the termination message: compact, redacted, at most 4096 bytes."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from kubetune.api.contract import TERMINATION_LOG, TERMINATION_MESSAGE_LIMIT, TrainerResult
from kubetune.api.redact import redact


def result_json(result: TrainerResult) -> str:
    return json.dumps(result.to_wire(), separators=(",", ":"), sort_keys=True)


def fit_result(result: TrainerResult, secrets: Iterable[str | None] = (),
               limit: int = TERMINATION_MESSAGE_LIMIT) -> TrainerResult:
    """Redact the message and shorten it (after dropping samples; then the URL) until the JSON fits."""
    secrets = list(secrets)
    message = redact(result.message, secrets) if result.message else None
    if message is not None and len(message) > 2048:
        message = message[:2047] + "…"
    samples = [s.model_copy(update={k: redact(v, secrets) for k, v in s.model_dump().items() if v})
               for s in result.samples]
    fitted = result.model_copy(update={"message": message, "samples": samples})
    # Samples are the least needed part (the model card has them in full): fewer, then none.
    while len(result_json(fitted).encode()) > limit and fitted.samples:
        fitted = fitted.model_copy(update={"samples": fitted.samples[:-1]})
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
