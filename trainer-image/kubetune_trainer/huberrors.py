"""What went wrong talking to a Hub, read off the exceptions huggingface_hub and its HTTP client raise.

Shared by the stages that talk to a Hub (the base model download, the push): each maps the
facts found here (an HTTP status anywhere in the cause chain, a transport failure) to its own
FailureReason. Nothing here imports an HTTP library, and every text is redacted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from kubetune.api.redact import redact

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
# httpx appends this to every HTTP error; it says nothing the status code does not.
_MDN_LINK = re.compile(r"For more information check: \S+")


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
