"""Requests the API server refuses for good, told on the object they were for.

A pass that fails is retried with backoff, which heals what passes by itself (a dropped
connection, a 500, a conflict). A request refused for what it is (RBAC: 401/403; an admission
policy or validation: 400/422) fails the same way on every retry, and without a word on the
TuningJob or Dataset the run would wait in silence. So the first refusal, and every refusal
whose message differs from the last, becomes a Warning Event on the object (the message is the
API server's, which names the verb, the resource and the namespace), with what to do; retries
go on, so a fixed Role or policy lets the run proceed without being applied again.
"""

from __future__ import annotations

import json
import threading
from typing import Final

from kubernetes.client.exceptions import ApiException

from kubetune.controller.objects import ObjectKey

REASON: Final = "RequestRefused"
REFUSING_STATUSES: Final = frozenset({400, 401, 403, 422})
_WHAT_TO_DO: Final = {
    401: "the operator's credentials were not accepted: check its ServiceAccount token",
    403: ("grant it to the operator's ServiceAccount (the chart's rbac.create renders every rule the operator needs; "
          "in namespaced mode only the namespaces in watchNamespaces get a Role), or lift the admission policy "
          "that denied it"),
}
_INVALID: Final = ("an admission policy or the API server's validation rejected what the operator built; "
                   "the message names it")


def refusal_message(exc: BaseException) -> str | None:
    """What to tell about `exc` if it is a refusal that retrying will not change, else None."""
    if not isinstance(exc, ApiException) or exc.status not in REFUSING_STATUSES:
        return None
    try:
        said = str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        said = str(exc.reason)
    return f"the API server refused a request of the operator ({exc.status}): {said}. " \
           f"To fix: {_WHAT_TO_DO.get(int(exc.status), _INVALID)}; the operator keeps retrying."


class RefusalLog:
    """The last refusal told per object, so a retry that meets the same one says nothing again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._told: dict[ObjectKey, str] = {}

    def is_news(self, key: ObjectKey, message: str) -> bool:
        with self._lock:
            news = self._told.get(key) != message
            self._told[key] = message
            return news

    def cleared(self, key: ObjectKey) -> None:
        """A pass of `key` went through: a later refusal is news again."""
        with self._lock:
            self._told.pop(key, None)
