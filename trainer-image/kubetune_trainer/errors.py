"""The trainer's one failure type: a reason the operator can switch on and a message for people."""

from __future__ import annotations

from kubetune.api.contract import FailureReason

RETRYABLE_REASONS = frozenset(
    {FailureReason.UNREACHABLE, FailureReason.PUSH_FAILED, FailureReason.INTERRUPTED}
)


class TrainerFailure(Exception):
    """A run that cannot go on. `retryable` defaults by reason (network and push failures are)."""

    def __init__(self, reason: FailureReason, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.retryable = reason in RETRYABLE_REASONS if retryable is None else retryable
