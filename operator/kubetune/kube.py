"""Thin Kubernetes I/O for the handlers: create idempotently, read, patch, read pod logs.

Everything speaks plain dicts as they appear on the wire (camelCase), the shape the pure
builders produce and the status functions read. Calls are synchronous (the `kubernetes`
client); kopf runs the sync handlers that use them in its thread pool.

The client is configured explicitly (`KubeClient.configure`) by the operator's login
handler rather than from the `kubernetes` package's import-time defaults, so the operator
talks to exactly the API server kopf talks to. Nothing here reads Secrets.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import kopf
import kubernetes.client
from kubernetes.client.exceptions import ApiException

from kubetune.api.common import GROUP, VERSION
from kubetune.redact import redact

logger = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
TUNINGJOBS = "tuningjobs"
DATASETS = "datasets"
# Event messages are capped by the API server at 1 KiB of note; keep ours readable within it.
EVENT_MESSAGE_LIMIT = 1000

Obj = dict[str, Any]


class KubeClient:
    """The operator's connection to the API server, shared by all handlers."""

    def __init__(self) -> None:
        self._api: kubernetes.client.ApiClient | None = None

    def configure(self, configuration: kubernetes.client.Configuration) -> None:
        self._api = kubernetes.client.ApiClient(configuration)

    @property
    def api(self) -> kubernetes.client.ApiClient:
        if self._api is None:
            raise RuntimeError("the Kubernetes client is not configured yet: the login handler has not run")
        return self._api

    @property
    def core(self) -> kubernetes.client.CoreV1Api:
        return kubernetes.client.CoreV1Api(self.api)

    @property
    def batch(self) -> kubernetes.client.BatchV1Api:
        return kubernetes.client.BatchV1Api(self.api)

    @property
    def custom(self) -> kubernetes.client.CustomObjectsApi:
        return kubernetes.client.CustomObjectsApi(self.api)

    # --- create -------------------------------------------------------------------------

    def create(self, obj: Mapping[str, Any]) -> Obj | None:
        """Create a ConfigMap or Job; the object as the API server stored it, or None if it already existed.

        AlreadyExists is success: names are deterministic, so an existing object is the one a
        previous attempt (or a previous operator process) created.
        """
        kind = obj.get("kind")
        namespace = obj["metadata"].get("namespace") or "default"
        body: Any = dict(obj)  # the client takes plain dicts as well as its models
        try:
            if kind == "ConfigMap":
                response: Any = self.core.create_namespaced_config_map(namespace, body, _preload_content=False)
            elif kind == "Job":
                response = self.batch.create_namespaced_job(namespace, body, _preload_content=False)
            else:
                raise ValueError(f"kubetune does not create objects of kind {kind!r}")
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise
        return _json(response)

    # --- read ---------------------------------------------------------------------------

    def get_job(self, namespace: str, name: str) -> Obj | None:
        return _or_none(lambda: self.batch.read_namespaced_job(name, namespace, _preload_content=False))

    def list_jobs(self, namespace: str, labels: Mapping[str, str]) -> list[Obj]:
        response = self.batch.list_namespaced_job(namespace, label_selector=_selector(labels),
                                                  _preload_content=False)
        return [item for item in _json(response).get("items", []) if _has_labels(item, labels)]

    def list_pods(self, namespace: str, labels: Mapping[str, str]) -> list[Obj]:
        response = self.core.list_namespaced_pod(namespace, label_selector=_selector(labels),
                                                 _preload_content=False)
        return [item for item in _json(response).get("items", []) if _has_labels(item, labels)]

    def get_tuningjob(self, namespace: str, name: str) -> Obj | None:
        return self._get_custom(TUNINGJOBS, namespace, name)

    def get_dataset(self, namespace: str, name: str) -> Obj | None:
        return self._get_custom(DATASETS, namespace, name)

    def list_tuningjobs(self, namespace: str) -> list[Obj]:
        response = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, TUNINGJOBS,
                                                             _preload_content=False)
        return list(_json(response).get("items", []))

    def _get_custom(self, plural: str, namespace: str, name: str) -> Obj | None:
        return _or_none(lambda: self.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, _preload_content=False))

    def read_log_tail(self, namespace: str, pod: str, *, container: str | None = None,
                      tail_lines: int, since_seconds: int | None = None) -> list[str] | None:
        """The last `tail_lines` lines of a container's log (None if there is no log yet).

        Bounded on both ends so a chatty trainer never makes the operator read megabytes.
        """
        kwargs: dict[str, Any] = {"tail_lines": tail_lines, "_preload_content": False}
        if container:
            kwargs["container"] = container
        if since_seconds:
            kwargs["since_seconds"] = since_seconds
        try:
            response: Any = self.core.read_namespaced_pod_log(pod, namespace, **kwargs)
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
        self.batch.patch_namespaced_job(name, namespace, {"spec": {"suspend": suspend}},
                                        _content_type=MERGE_PATCH, _preload_content=False)

    def patch_status(self, plural: str, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        """Merge-patch the status subresource (`patch` is the status part only)."""
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, plural, name, {"status": dict(patch)},
            _content_type=MERGE_PATCH, _preload_content=False)


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


def _or_none(call: Any) -> Obj | None:
    try:
        return _json(call())
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


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
