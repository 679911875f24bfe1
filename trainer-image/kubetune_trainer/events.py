"""Everything the trainer prints: plain log lines and protocol events, with secrets redacted."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import TextIO

from kubetune.api.progress import ProgressEvent, Stage, StageEvent, format_event
from kubetune.api.redact import redact


class Reporter:
    """Prints to stdout (flushed: the operator tails the log while the Pod runs).

    `quiet`: print nothing (every rank of a distributed run but rank 0, whose lines speak for all).
    """

    def __init__(self, secrets: Iterable[str | None] = (), stream: TextIO | None = None, *,
                 quiet: bool = False) -> None:
        self.secrets = [s for s in secrets if s]
        self._stream = stream
        self.quiet = quiet

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stdout

    def clean(self, text: str) -> str:
        return redact(text, self.secrets)

    def log(self, text: str) -> None:
        if self.quiet:
            return
        print(self.clean(text), file=self.stream, flush=True)

    def stage(self, stage: Stage, message: str = "") -> None:
        if self.quiet:
            return
        print(format_event(StageEvent(stage=stage, message=self.clean(message))), file=self.stream, flush=True)

    def progress(self, event: ProgressEvent) -> None:
        if self.quiet:
            return
        print(format_event(event), file=self.stream, flush=True)

    def install_log_redaction(self) -> None:
        """Redact the secrets from what libraries log too (transformers, huggingface_hub, urllib3...)."""
        redaction = _RedactFilter(self.secrets)
        loggers = [logging.getLogger(), *(logging.getLogger(n) for n in ("transformers", "huggingface_hub", "peft",
                                                                         "accelerate", "urllib3", "httpx"))]
        for logger in loggers:
            logger.addFilter(redaction)
            for handler in logger.handlers:
                handler.addFilter(redaction)


class _RedactFilter(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = None
        return True
