"""Scrub secrets from text before it leaves a process (logs, status, events, exceptions)."""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "***"
# Hugging Face user and organisation tokens; caught even when nobody told us the value.
_HF_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")
_BEARER = re.compile(r"(?i)(authorization:\s*bearer\s+)\S+")


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Replace every known secret value and anything shaped like a Hub token."""
    for secret in secrets:
        # Short values would blank out ordinary words; real tokens are long.
        if secret and len(secret) >= 8:
            text = text.replace(secret, REDACTED)
    text = _HF_TOKEN.sub(REDACTED, text)
    return _BEARER.sub(r"\1" + REDACTED, text)
