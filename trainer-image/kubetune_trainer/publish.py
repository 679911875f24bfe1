"""Publish a trained model folder to a Hugging Face Hub (huggingface.co or a self-hosted one).

One commit per publish, retried with exponential backoff on transient failures (5xx,
429, connection errors, timeouts). Authentication failures are permanent and fail at
once. The local folder is only read: the trained weights survive a failed push, so a
retry of the Job (or a person) can push them later. The token never appears in what
this module logs or raises.

Against a server that does not speak Xet (a self-hosted Hub, the test server), set
HF_HUB_DISABLE_XET=1 in the environment before huggingface_hub is imported.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from kubetune.api.contract import FailureReason
from kubetune.api.redact import redact

__all__ = ["PublishError", "PublishedModel", "describe_error", "error_chain", "is_transport_error", "publish_folder",
           "redact", "status_code"]

# Exception classes (by name, so no HTTP library is imported here) that mean the network,
# not the request, failed: httpx/httpx2 transport errors and requests' equivalents.
_TRANSPORT_ERRORS = frozenset(
    {
        "TransportError",
        "ConnectError",
        "ConnectTimeout",
        "ReadTimeout",
        "WriteTimeout",
        "PoolTimeout",
        "TimeoutException",
        "NetworkError",
        "ReadError",
        "WriteError",
        "RemoteProtocolError",
        "ConnectionError",
        "Timeout",
        "ChunkedEncodingError",
    }
)
_MAX_BACKOFF_SECONDS = 60.0
# httpx appends this to every HTTP error; it says nothing the status code does not.
_MDN_LINK = re.compile(r"For more information check: \S+")


@dataclass(frozen=True)
class PublishedModel:
    repo: str
    revision: str  # the commit sha
    url: str


class PublishError(Exception):
    """A publish that did not happen. `message` is safe to show: secrets are redacted."""

    def __init__(self, reason: FailureReason, message: str, *, retryable: bool) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.retryable = retryable


def publish_folder(
    folder: Path,
    *,
    repo: str,
    token: str | None,
    endpoint: str | None,
    private: bool,
    commit_message: str,
    path_in_repo: str = "",
    ignore_patterns: list[str] | None = None,
    attempts: int = 5,
    backoff_seconds: float = 2.0,
    log: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> PublishedModel:
    """Create `repo` if needed and upload `folder` to it in one commit; return that commit."""
    from huggingface_hub import HfApi

    secrets = _secrets(token)
    folder = Path(folder)
    if not folder.is_dir():
        raise PublishError(
            FailureReason.INVALID_CONFIG, f"nothing to publish: {folder} is not a folder", retryable=False
        )
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    api = HfApi(endpoint=endpoint, token=token)
    where = redact(f"{repo} on {api.endpoint}", secrets)
    for attempt in range(1, attempts + 1):
        try:
            repo_url = api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
            info = api.upload_folder(
                repo_id=repo_url.repo_id,
                folder_path=folder,
                path_in_repo=path_in_repo or None,
                commit_message=commit_message,
                ignore_patterns=list(ignore_patterns) if ignore_patterns else None,
                repo_type="model",
            )
        except Exception as exc:
            failure = classify(exc, secrets)
            if not failure.retryable:
                log(f"publish: {where} failed: {failure.message}")
                raise failure from None
            if attempt == attempts:
                log(f"publish: {where} failed after {attempts} attempts: {failure.message}")
                raise PublishError(
                    FailureReason.PUSH_FAILED,
                    f"gave up after {attempts} attempts; last error: {failure.message}",
                    retryable=True,
                ) from None
            delay = min(backoff_seconds * 2 ** (attempt - 1), _MAX_BACKOFF_SECONDS)
            log(
                f"publish: attempt {attempt}/{attempts} to {where} failed ({failure.message}); retrying in {delay:.1f}s"
            )
            sleep(delay)
            continue
        sha = str(info.oid)
        published = PublishedModel(
            repo=repo_url.repo_id, revision=sha, url=f"{api.endpoint}/{repo_url.repo_id}/tree/{sha}"
        )
        log(f"publish: pushed {folder.name} to {where} as commit {sha}")
        return published
    raise AssertionError("unreachable: the loop returns or raises")


def classify(exc: BaseException, secrets: Iterable[str | None]) -> PublishError:
    """Map an exception from huggingface_hub to a PublishError: auth, transient or permanent."""
    message = describe_error(exc, secrets)
    for link in error_chain(exc):
        status = status_code(link)
        if status in (401, 403):
            return PublishError(
                FailureReason.AUTH_FAILED, f"the Hub refused the token (HTTP {status}): {message}", retryable=False
            )
        if status is not None and (status >= 500 or status in (408, 429)):
            return PublishError(FailureReason.PUSH_FAILED, message, retryable=True)
        if status is not None:  # any other 4xx: the request itself is wrong, repeating it cannot help
            return PublishError(FailureReason.PUSH_FAILED, message, retryable=False)
        if isinstance(link, ConnectionError | TimeoutError) or is_transport_error(link):
            return PublishError(FailureReason.PUSH_FAILED, message, retryable=True)
    # Client-side refusals (invalid README metadata, bad repo id...) and our own bugs.
    return PublishError(FailureReason.PUSH_FAILED, message, retryable=False)


def error_chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes: the client wraps LFS upload errors in RuntimeError."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def status_code(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def is_transport_error(exc: BaseException) -> bool:
    return any(cls.__name__ in _TRANSPORT_ERRORS for cls in type(exc).__mro__)


def describe_error(exc: BaseException, secrets: Iterable[str | None]) -> str:
    # The client's messages span several lines (URL, request id, server message): keep them short.
    text = " ".join(_MDN_LINK.sub("", str(exc)).split()) or type(exc).__name__
    return redact(f"{type(exc).__name__}: {text}"[:1000], secrets)


def _secrets(token: str | None) -> list[str | None]:
    # The client falls back to these when no token is passed.
    return [token, os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")]
