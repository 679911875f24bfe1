"""Thin Kubernetes I/O for the handlers: create idempotently, read, patch, read pod logs.

Everything speaks plain dicts as they appear on the wire (camelCase), the shape the pure
builders produce and the status functions read. Calls are synchronous (the `kubernetes`
client's transport); kopf runs the sync handlers that use them in its thread pool.

The client is configured explicitly (`KubeClient.configure`) by the operator's login
handler rather than from the `kubernetes` package's import-time defaults, so the operator
talks to exactly the API server kopf talks to. Nothing here reads Secrets.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import kopf
import kubernetes.client
from kubernetes.client.exceptions import ApiException

from kubetune.api.common import GROUP, VERSION
from kubetune.api.redact import redact

logger = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
TUNINGJOBS = "tuningjobs"
DATASETS = "datasets"
# Event messages are capped by the API server at 1 KiB of note; keep ours readable within it.
EVENT_MESSAGE_LIMIT = 1000

Obj = dict[str, Any]


class KubeClient:
    """The operator's connection to the API server, shared by all handlers.

    Requests go through the `kubernetes` client's transport (its configuration, auth, TLS and
    retries) as plain JSON: its typed API methods validate every argument with pydantic and
    turn a dict body into the generated model and back, which was most of the handler
    threads' CPU in a burst of TuningJobs (docs/benchmarks.md, control plane).
    """

    def __init__(self) -> None:
        self._api: kubernetes.client.ApiClient | None = None

    def configure(self, configuration: kubernetes.client.Configuration) -> None:
        self._api = kubernetes.client.ApiClient(configuration)

    @property
    def api(self) -> kubernetes.client.ApiClient:
        if self._api is None:
            raise RuntimeError("the Kubernetes client is not configured yet: the login handler has not run")
        return self._api

    def _request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                 body: Any = None, content_type: str = "application/json") -> Any:
        """One API call; the response with its body read. Non-2xx raises ApiException, as the client does."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        request = self.api.param_serialize(
            method=method, resource_path=path, query_params=list((query or {}).items()),
            header_params=headers, body=body, auth_settings=["BearerToken"])
        response = self.api.call_api(*request)
        response.read()
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response

    # --- create -------------------------------------------------------------------------

    def create(self, obj: Mapping[str, Any]) -> Obj | None:
        """Create a ConfigMap, Service or Job; the object as the API server stored it, or None if it already existed.

        AlreadyExists is success: names are deterministic, so an existing object is the one a
        previous attempt (or a previous operator process) created.
        """
        kind = obj.get("kind")
        namespace = obj["metadata"].get("namespace") or "default"
        if kind == "ConfigMap":
            path = _core_path(namespace, "configmaps")
        elif kind == "Service":
            path = _core_path(namespace, "services")
        elif kind == "Job":
            path = _batch_path(namespace, "jobs")
        else:
            raise ValueError(f"kubetune does not create objects of kind {kind!r}")
        try:
            return _json(self._request("POST", path, body=dict(obj)))
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise

    # --- read ---------------------------------------------------------------------------

    def get_job(self, namespace: str, name: str) -> Obj | None:
        return self._get(_batch_path(namespace, "jobs", name))

    def list_jobs(self, namespace: str, labels: Mapping[str, str]) -> list[Obj]:
        return self._list(_batch_path(namespace, "jobs"), labels)

    def list_pods(self, namespace: str, labels: Mapping[str, str]) -> list[Obj]:
        return self._list(_core_path(namespace, "pods"), labels)

    def get_tuningjob(self, namespace: str, name: str) -> Obj | None:
        return self._get(_custom_path(namespace, TUNINGJOBS, name))

    def get_dataset(self, namespace: str, name: str) -> Obj | None:
        return self._get(_custom_path(namespace, DATASETS, name))

    def list_tuningjobs(self, namespace: str) -> list[Obj]:
        return list(_json(self._request("GET", _custom_path(namespace, TUNINGJOBS))).get("items", []))

    def _get(self, path: str) -> Obj | None:
        try:
            return _json(self._request("GET", path))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _list(self, path: str, labels: Mapping[str, str]) -> list[Obj]:
        items = _json(self._request("GET", path, query={"labelSelector": _selector(labels)})).get("items", [])
        return [item for item in items if _has_labels(item, labels)]

    def read_log_tail(self, namespace: str, pod: str, *, container: str | None = None,
                      tail_lines: int, since_seconds: int | None = None) -> list[str] | None:
        """The last `tail_lines` lines of a container's log (None if there is no log yet).

        Bounded on both ends so a chatty trainer never makes the operator read megabytes.
        """
        query: dict[str, Any] = {"tailLines": tail_lines}
        if container:
            query["container"] = container
        if since_seconds:
            query["sinceSeconds"] = since_seconds
        try:
            response = self._request("GET", _core_path(namespace, "pods", pod) + "/log", query=query)
        except ApiException as exc:
            # 400: the container is not running yet (ContainerCreating); 404: the Pod is gone.
            if exc.status in (400, 404):
                return None
            raise
        text = response.data.decode("utf-8", errors="replace")
        return text.splitlines()[-tail_lines:] if tail_lines else []

    def owner_name(self, body: Mapping[str, Any], kind: str) -> str | None:
        """The name of the kubetune `kind` (TuningJob, Dataset) owning a Job, or a Pod via its Job."""
        meta = body.get("metadata") or {}
        refs = meta.get("ownerReferences") or []
        for ref in refs:
            if ref.get("kind") == kind and str(ref.get("apiVersion", "")).startswith(GROUP + "/"):
                return str(ref["name"])
        for ref in refs:
            if ref.get("kind") == "Job":
                job = self.get_job(meta.get("namespace") or "default", ref["name"])
                return self.owner_name(job, kind) if job is not None else None
        return None

    # --- write --------------------------------------------------------------------------

    def patch_job_suspend(self, namespace: str, name: str, suspend: bool) -> None:
        self._request("PATCH", _batch_path(namespace, "jobs", name), body={"spec": {"suspend": suspend}},
                      content_type=MERGE_PATCH)

    def patch_status(self, plural: str, namespace: str, name: str, patch: Mapping[str, Any]) -> Obj:
        """Merge-patch the status subresource (`patch` is the status part only); the object as patched."""
        path = _custom_path(namespace, plural, name) + "/status"
        return _json(self._request("PATCH", path, body={"status": dict(patch)}, content_type=MERGE_PATCH))


def _core_path(namespace: str, plural: str, name: str | None = None) -> str:
    return _named(f"/api/v1/namespaces/{quote(namespace)}/{plural}", name)


def _batch_path(namespace: str, plural: str, name: str | None = None) -> str:
    return _named(f"/apis/batch/v1/namespaces/{quote(namespace)}/{plural}", name)


def _custom_path(namespace: str, plural: str, name: str | None = None) -> str:
    return _named(f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace)}/{plural}", name)


def _named(path: str, name: str | None) -> str:
    return f"{path}/{quote(name)}" if name is not None else path


def post_event(body: Mapping[str, Any], type: str, reason: str, message: str) -> None:
    """An Event about `body`, for `kubectl describe`; the message is redacted and capped."""
    text = redact(message)
    if len(text) > EVENT_MESSAGE_LIMIT:
        text = text[: EVENT_MESSAGE_LIMIT - 1] + "…"
    kopf.event(dict(body), type=type, reason=reason, message=text)  # type: ignore[arg-type]


def merge_patch(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`: removed keys become None."""
    old = old or {}
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            sub = merge_patch(before, value)
            if sub:
                patch[key] = sub
        elif value != before or key not in old:
            patch[key] = value
    return patch


def _json(response: Any) -> Obj:
    return dict(json.loads(response.data))


def _selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def _has_labels(obj: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    # The API server filters by the selector; checked again so that a server which ignores
    # selectors (test emulators) cannot make the operator act on someone else's Pod.
    have = (obj.get("metadata") or {}).get("labels") or {}
    return all(have.get(key) == value for key, value in labels.items())


def pods_of_job(pods: list[Obj], job_name: str) -> list[Obj]:
    """The Pods a Job owns (Pods of an older Job under the same labels do not count)."""
    return [pod for pod in pods
            if any(ref.get("kind") == "Job" and ref.get("name") == job_name
                   for ref in (pod.get("metadata") or {}).get("ownerReferences") or ())]
