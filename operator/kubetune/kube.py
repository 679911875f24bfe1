"""Thin Kubernetes I/O for the controller: create idempotently, list, patch, post Events, read pod logs.

Everything speaks plain dicts as they appear on the wire (camelCase), the shape the pure
builders produce and the status functions read. Calls are synchronous (the `kubernetes`
client's transport), made by the controller's worker threads.

The client is configured explicitly (`KubeClient.configure`) by the operator's startup
handler rather than from the `kubernetes` package's import-time defaults, so the operator
talks to exactly the API server kopf talks to. Nothing here reads Secrets.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote

import kubernetes.client
from kubernetes.client.exceptions import ApiException

from kubetune.api.common import GROUP, VERSION

MERGE_PATCH = "application/merge-patch+json"
TUNINGJOBS = "tuningjobs"
DATASETS = "datasets"
LIST_PAGE = 500
_WATCH_READ = 64 * 1024

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

    def configure(self, configuration: kubernetes.client.Configuration, *, connections: int = 10) -> None:
        """Talk to the server `configuration` names, with up to `connections` kept-alive connections
        (one per thread that calls concurrently; urllib3 drops and reopens the ones beyond)."""
        configuration.connection_pool_maxsize = max(connections, configuration.connection_pool_maxsize or 0)
        self._api = kubernetes.client.ApiClient(configuration)

    @property
    def api(self) -> kubernetes.client.ApiClient:
        if self._api is None:
            raise RuntimeError("the Kubernetes client is not configured yet: the startup handler has not run")
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
        """Create a ConfigMap, Service, Job or PersistentVolumeClaim; the object as the API server stored it,
        or None if it already existed.

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
        elif kind == "PersistentVolumeClaim":
            path = _core_path(namespace, "persistentvolumeclaims")
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

    def get_claim(self, namespace: str, name: str) -> Obj | None:
        return self._get(_core_path(namespace, "persistentvolumeclaims", name))

    def list_all(self, plural: str, *, namespaces: Sequence[str] = (),
                 labels: Mapping[str, str | None] | None = None) -> list[Obj]:
        """Every object of a kind (tuningjobs, datasets, jobs, pods) in `namespaces` (none: all
        namespaces) that carries `labels` (a None value: the label with any value).

        Read page by page, as an informer's initial listing is.
        """
        wanted = dict(labels or {})
        items: list[Obj] = []
        for namespace in namespaces or (None,):
            path = _PLURAL_PATHS[plural](namespace)
            query: dict[str, Any] = {"limit": LIST_PAGE}
            if wanted:
                query["labelSelector"] = selector(wanted)
            while True:
                page = _json(self._request("GET", path, query=query))
                items += [item for item in page.get("items", []) if _has_labels(item, wanted)]
                token = (page.get("metadata") or {}).get("continue")
                if not token:
                    break
                query["continue"] = token
        return items

    def list_snapshot(self, plural: str, namespace: str | None, *,
                      labels: Mapping[str, str | None] | None = None) -> tuple[list[Obj], str]:
        """Every object of a kind in `namespace` (None: all) that carries `labels`, and the
        resourceVersion the listing is consistent at (where a watch of it starts).

        Read page by page: the pages of one listing are one snapshot, at the first page's version.
        """
        wanted = dict(labels or {})
        path = _PLURAL_PATHS[plural](namespace)
        query: dict[str, Any] = {"limit": LIST_PAGE}
        if wanted:
            query["labelSelector"] = selector(wanted)
        items: list[Obj] = []
        version = ""
        while True:
            page = _json(self._request("GET", path, query=query))
            items += [item for item in page.get("items", []) if _has_labels(item, wanted)]
            version = version or str((page.get("metadata") or {}).get("resourceVersion") or "")
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items, version
            query["continue"] = token

    def watch(self, plural: str, namespace: str | None, *, version: str,
              labels: Mapping[str, str | None] | None = None, timeout_seconds: int = 300) -> WatchStream:
        """A watch of a kind from `version` on, as a stream of its events (dicts: type, object).

        The server ends the watch after `timeout_seconds`; `allowWatchBookmarks` lets it tell a
        quiet watch's newer versions, so that a restart resumes from where it had got to.
        """
        query: dict[str, Any] = {"watch": "true", "resourceVersion": version, "allowWatchBookmarks": "true",
                                 "timeoutSeconds": timeout_seconds}
        if labels:
            query["labelSelector"] = selector(labels)
        request = self.api.param_serialize(
            method="GET", resource_path=_PLURAL_PATHS[plural](namespace), query_params=list(query.items()),
            header_params={"Accept": "application/json"}, auth_settings=["BearerToken"])
        # A read timeout beyond the server's own: a connection that went silent is given up.
        response = self.api.call_api(*request, _request_timeout=(10, timeout_seconds + 30)).response
        if not 200 <= response.status <= 299:
            response.read()
            response.release_conn()
            raise ApiException(status=response.status, reason=response.reason,
                               body=response.data.decode("utf-8", errors="replace") if response.data else None)
        return WatchStream(response)

    def _get(self, path: str) -> Obj | None:
        try:
            return _json(self._request("GET", path))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list_events(self, namespace: str, fields: Mapping[str, str]) -> list[Obj]:
        """The core/v1 Events of a namespace whose fields (involvedObject.name, reason ...) have these values,
        selected by the API server."""
        query = {"fieldSelector": ",".join(f"{key}={value}" for key, value in fields.items())}
        return list(_json(self._request("GET", _core_path(namespace, "events"), query=query)).get("items") or [])

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

    # --- write --------------------------------------------------------------------------

    def patch_job_suspend(self, namespace: str, name: str, suspend: bool) -> Obj:
        """Set the Job's spec.suspend; the Job as patched."""
        return _json(self._request("PATCH", _batch_path(namespace, "jobs", name),
                                   body={"spec": {"suspend": suspend}}, content_type=MERGE_PATCH))

    def patch_status(self, plural: str, namespace: str, name: str, patch: Mapping[str, Any]) -> Obj:
        """Merge-patch the status subresource (`patch` is the status part only); the object as patched."""
        path = _custom_path(namespace, plural, name) + "/status"
        return _json(self._request("PATCH", path, body={"status": dict(patch)}, content_type=MERGE_PATCH))

    def create_event(self, event: Mapping[str, Any]) -> None:
        namespace = event["metadata"].get("namespace") or "default"
        self._request("POST", _core_path(namespace, "events"), body=dict(event))


class WatchStream:
    """The events of one watch, parsed as they arrive; `close` (from any thread) ends it."""

    def __init__(self, response: Any) -> None:
        self._response = response
        self._closed = False

    def __iter__(self) -> Iterator[Obj]:
        response = self._response
        chunks: Iterable[bytes] = (response.read_chunked() if response.chunked
                                   else iter(lambda: response.read1(_WATCH_READ), b""))
        pending = b""
        try:
            for chunk in chunks:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield dict(json.loads(line))
        except Exception:
            if self._closed:
                return  # closed from another thread: the read was cut short on purpose
            raise
        finally:
            self._finish()

    def close(self) -> None:
        """Cut the connection, so that a thread blocked reading the stream returns."""
        self._closed = True
        with contextlib.suppress(Exception):  # already finished: nothing to cut
            self._response.shutdown()

    def _finish(self) -> None:
        # A watch read to its end leaves a reusable connection; one cut short does not.
        if not self._closed and self._response.isclosed():
            self._response.release_conn()
        else:
            self._response.close()
            self._response.release_conn()


def selector(labels: Mapping[str, str | None]) -> str:
    """A label selector: `key` for a None value (the label with any value), else `key=value`."""
    return ",".join(k if v is None else f"{k}={v}" for k, v in sorted(labels.items()))


def _core_path(namespace: str, plural: str, name: str | None = None) -> str:
    return _named(f"/api/v1/namespaces/{quote(namespace)}/{plural}", name)


def _batch_path(namespace: str, plural: str, name: str | None = None) -> str:
    return _named(f"/apis/batch/v1/namespaces/{quote(namespace)}/{plural}", name)


def _custom_path(namespace: str, plural: str, name: str | None = None) -> str:
    return _named(f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace)}/{plural}", name)


def _named(path: str, name: str | None) -> str:
    return f"{path}/{quote(name)}" if name is not None else path


def _all_or_one(base: str, plural: str) -> Callable[[str | None], str]:
    return lambda namespace: f"{base}/namespaces/{quote(namespace)}/{plural}" if namespace else f"{base}/{plural}"


# The kinds the operator lists at start, by plural: the path of their list in one namespace or all.
_PLURAL_PATHS: Final = {
    TUNINGJOBS: _all_or_one(f"/apis/{GROUP}/{VERSION}", TUNINGJOBS),
    DATASETS: _all_or_one(f"/apis/{GROUP}/{VERSION}", DATASETS),
    "jobs": _all_or_one("/apis/batch/v1", "jobs"),
    "pods": _all_or_one("/api/v1", "pods"),
}


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


def _has_labels(obj: Mapping[str, Any], labels: Mapping[str, str | None]) -> bool:
    # The API server filters by the selector; checked again so that a server which ignores
    # selectors (test emulators) cannot make the operator act on someone else's objects.
    have = (obj.get("metadata") or {}).get("labels") or {}
    return all(key in have and (value is None or have[key] == value) for key, value in labels.items())
