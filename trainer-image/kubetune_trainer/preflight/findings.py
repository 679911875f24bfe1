"""What the preflight found, as it goes: errors (the run cannot succeed), warnings, and what was checked."""

from __future__ import annotations

from dataclasses import dataclass, field

from kubetune.api.contract import FailureReason, PreflightIssue
from kubetune.api.redact import redact

_MESSAGE_CHARS = 1024


@dataclass
class Findings:
    secrets: list[str | None] = field(default_factory=list)
    issues: list[PreflightIssue] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    transient: list[bool] = field(default_factory=list)  # per error: the network, not the setup, failed

    def error(self, reason: FailureReason, message: str, *, transient: bool = False) -> None:
        self.issues.append(PreflightIssue(reason=reason, severity="Error", message=self._clean(message)))
        self.transient.append(transient)

    def warning(self, reason: FailureReason, message: str) -> None:
        self.issues.append(PreflightIssue(reason=reason, severity="Warning", message=self._clean(message)))

    def check(self, what: str) -> None:
        if what not in self.checked:
            self.checked.append(what)

    @property
    def failed(self) -> bool:
        return any(i.severity == "Error" for i in self.issues)

    @property
    def retryable(self) -> bool:
        """Every error was the network's: a new attempt may pass."""
        return bool(self.transient) and all(self.transient)

    def _clean(self, message: str) -> str:
        text = redact(" ".join(message.split()), self.secrets)
        return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 1] + "…"
