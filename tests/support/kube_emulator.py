"""A Kubernetes API on loopback for the operator wiring tests: kmock's emulator, patched up.

kmock's `KubernetesEmulator` keeps objects in memory and serves create/get/list/patch/delete
and watch streams, but leaves gaps a real API server fills. `KubetuneEmulator` fills the ones
the operator and the `kubernetes` client trip over:

- `uid`, `resourceVersion`, `creationTimestamp`, `generation` on create; `generation`
  bumped on spec changes (not on status or metadata patches), `resourceVersion` on every write;
- `generateName` honoured (kopf names its Events that way; without it the second Event clashes);
- list answers carry `kind: <Kind>List` and `apiVersion`;
- label selectors honoured on lists (kmock ignores them);
- a watch starting at the resourceVersion of a list gets only later changes (kmock replays every
  object as ADDED, and kopf then patches a stale version);
- a JSON patch whose `test` op fails (kopf's optimistic concurrency) answers 422, not 500;
- `Cluster.fail_next` makes the next matching request fail before anything is stored (an
  API server error), so tests can show the operator retries;
- `pods/{name}/log` answers the text the test put there with `Cluster.set_log` (kmock would
  answer the Pod's JSON), honouring `tailLines`;
- an object is looked up by its key, and the served resources are known without scanning
  every stored object;
- a request is matched against the reactions on its own: kmock scans its whole request log
  for every reaction to decide whether the request is "seen" by it (`request in reaction`),
  quadratic in the log, and a burst of concurrent requests is all in that log at once; here
  each request's task sees only itself, and kmock's log is not kept. `served` keeps what the
  tests ask about (method, path, query, client) for every request.

There is still no garbage collector, no controllers and no schema validation: the test plays
the kubelet and the Job controller itself, through `Cluster`.

The emulator runs on its own event loop in a thread, so tests stay synchronous and the operator
(`kopf.testing.KopfRunner`, another thread) can never be starved by a test waiting.
"""

from __future__ import annotations

import asyncio
import builtins
import contextvars
import copy
import json
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import jsonpatch
import kmock
from kmock._internal import rendering

from kubetune.settings import Settings

T = TypeVar("T")

CRDS = {
    "kubetune.io/v1alpha1/tuningjobs": ("TuningJob", "tuningjob", {"tj"}),
    "kubetune.io/v1alpha1/datasets": ("Dataset", "dataset", {"tds"}),
}
VERBS = {"get", "list", "watch", "create", "update", "patch", "delete"}
# The request the current asyncio task is serving (each aiohttp request runs in its own task).
_SERVING: contextvars.ContextVar[rendering.Request | None] = contextvars.ContextVar("serving", default=None)


class KubetuneEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with the metadata, naming and listing rules of a real API server."""

    resource_version: int
    pod_logs: dict[tuple[str, str], str]
    served: list[tuple[str, str, dict[str, str], str]]
    object_resources: set[Any]
    failures: list[tuple[str, str, int]]
    keep_request_log = False  # True: kmock's own log and matching (the benchmark can ask for it)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.pod_logs = {}
        self.served = []
        self.object_resources = set()
        self.failures = []
        self.resource_version = 0
        self.resources.load_bundled()
        for key, (kind, singular, shortnames) in CRDS.items():
            self.resources[key] = kmock.ResourceInfo(
                kind=kind, singular=singular, shortnames=shortnames, namespaced=True,
                verbs=VERBS, subresources={"status"},
            )
        self[kmock.action.FETCH, kmock.resource("v1/pods"), kmock.subresource("log")] << self._serve_log

    def __iter__(self) -> Iterator[rendering.Request]:
        # kmock decides whether a reaction applies by iterating the requests it "sees" and looking
        # for this one by identity; the serving task's own request is the only one it can be.
        current = _SERVING.get()
        if current is None or self.keep_request_log:
            yield from super().__iter__()
        else:
            yield current

    def _get_resources(self) -> list[Any]:
        # kmock adds the resource of every stored object to the declared ones, scanning all
        # objects on every list; the resources of created objects are collected as they come.
        return list(set(kmock.KubernetesScaffold._get_resources(self)) | self.object_resources)

    def _KubernetesEmulator__get_objs(self, request: rendering.Request, strict: bool) -> list[Any]:
        # kmock finds the object of every request by scanning all stored objects, comparing
        # resources, namespaces and names one by one; an API server looks it up by key. So do
        # named requests here (kmock's own method is name-mangled, hence this name).
        if request.resource is not None and request.name is not None and (strict or request.namespace is not None):
            found = self._objects._objects.get((request.resource, request.namespace, request.name))
            return [found] if found is not None else []
        return super()._KubernetesEmulator__get_objs(request, strict)  # type: ignore[misc]

    async def _handle(self, request: rendering.Request) -> Any:
        # kmock appended `request` to its log just before this call, with no await between.
        self.served.append((request.method, request.url.path, dict(request.params),
                            request.headers.get("User-Agent", "")))
        if not self.keep_request_log:
            self._requests.clear()
            _SERVING.set(request)
        for failure in self.failures:
            method, path_part, status = failure
            if request.method == method and path_part in request.url.path:
                self.failures.remove(failure)
                raise kmock.KubernetesError(status=status, reason="InternalError", message="injected by the test")
        return await self._handle_patched(request)

    async def _handle_patched(self, request: rendering.Request) -> Any:
        if request.resource is not None and isinstance(request.data, dict):
            if request.action == kmock.action.CREATE:
                self.object_resources.add(request.resource)
                self._on_create(request.data)
            elif request.action == kmock.action.UPDATE and request.name is not None:
                self._on_update(request)
        elif request.action == kmock.action.UPDATE and isinstance(request.data, list):
            # A JSON patch: its `test` ops check the old resourceVersion, then it moves on.
            request.data.append({"op": "add", "path": "/metadata/resourceVersion", "value": self._next_version()})
        try:
            return await super()._handle(request)
        except jsonpatch.JsonPatchException as exc:
            # The API server answers a failed `test` op (optimistic concurrency) with 422,
            # which kopf takes as "retry on the next cycle"; kmock would answer 500.
            raise kmock.KubernetesError(status=422, reason="Invalid", message=str(exc)) from exc

    def _on_create(self, data: dict[str, Any]) -> None:
        meta = data.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        meta["resourceVersion"] = self._next_version()
        meta["generation"] = 1

    def _on_update(self, request: rendering.Request) -> None:
        assert request.resource is not None
        key: Any = (request.resource, request.namespace, request.name)
        meta = request.data.setdefault("metadata", {})
        meta["resourceVersion"] = self._next_version()
        if key in self.objects and not self.objects[key].deleted and request.subresource != "status":
            current = self.objects[key].raw
            spec = request.data.get("spec")
            if spec is not None and _merged(current.get("spec", {}), spec) != current.get("spec", {}):
                meta["generation"] = int(current.get("metadata", {}).get("generation", 1)) + 1

    def _next_version(self) -> str:
        self.resource_version += 1
        return str(self.resource_version)

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[Any]:
        # kmock replays every existing object as ADDED when a watch starts; a real API server
        # sends only what happened after the resourceVersion the client listed at. The replayed
        # duplicates make kopf patch a stale version and stall on the 422 until the next event.
        since = request.params.get("resourceVersion", "")
        floor = int(since) if since.isdigit() else None
        async for event in super()._serve_watch(request):
            if floor is not None and isinstance(event, dict) and event.get("type") == "ADDED" and \
                    int(event["object"].get("metadata", {}).get("resourceVersion") or 0) <= floor:
                continue
            yield event

    async def _serve_list(self, request: rendering.Request) -> Any:
        payload: Any = await super()._serve_list(request)
        answer: dict[str, Any] = dict(payload)
        assert request.resource is not None
        info = self.resources[request.resource]
        kind = info.kind or (request.resource.plural or "").capitalize()
        group = request.resource.group
        answer["kind"] = f"{kind}List"
        answer["metadata"] = {"resourceVersion": str(self.resource_version)}
        answer["apiVersion"] = f"{group}/{request.resource.version}" if group else request.resource.version
        selector = request.params.get("labelSelector")
        if selector:
            answer["items"] = [item for item in answer["items"] if _selected(item, selector)]
        return answer

    def _serve_log(self, request: rendering.Request) -> bytes:
        key = (request.namespace or "", request.name or "")
        key_in_store: Any = (request.resource, request.namespace, request.name)
        if key_in_store not in self.objects:
            raise kmock.KubernetesObjectNotFoundError()
        lines = self.pod_logs.get(key, "").splitlines(keepends=True)
        tail = request.params.get("tailLines")
        if tail is not None:
            lines = lines[-int(tail):] if int(tail) else []
        return "".join(lines).encode()


def _merged(base: Any, patch: Any) -> Any:
    """A JSON merge patch applied to a copy: what the object's field will be after the patch."""
    if not isinstance(patch, dict) or not isinstance(base, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merged(result.get(key), value)
    return result


def _selected(obj: dict[str, Any], selector: str) -> bool:
    """Equality and existence selectors (`a=b`, `a`, `!a`), as the operator uses them."""
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key.strip().rstrip("=")) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


# Operator settings for wiring tests: no ports to collide on, quick refreshes.
WIRING_SETTINGS = Settings(metrics_port=0, health_port=0, status_refresh_seconds=1,
                           trainer_image="example.org/trainer:test")


def wait_for(what: str, predicate: Callable[[], T | None], timeout: float = 15, interval: float = 0.05) -> T:
    """Poll `predicate` until it returns something truthy; fail saying `what` did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        time.sleep(interval)


def resource_path(resource: str, namespace: str | None, name: str | None = None) -> str:
    """`v1/pods` or `batch/v1/jobs` or `kubetune.io/v1alpha1/tuningjobs` -> the API path."""
    parts = resource.split("/")
    base = f"/api/{parts[0]}" if len(parts) == 2 else f"/apis/{parts[0]}/{parts[1]}"
    path = f"{base}/namespaces/{namespace}/{parts[-1]}" if namespace else f"{base}/{parts[-1]}"
    return f"{path}/{name}" if name else path


class Cluster:
    """The test's side of the emulated API: apply, patch and delete over HTTP (so watchers see
    it), read the in-memory objects directly (so reads cost no requests), and wait for states."""

    def __init__(self, emulator: KubetuneEmulator, loop: asyncio.AbstractEventLoop, url: str) -> None:
        self.emulator = emulator
        self.loop = loop
        self.url = url

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def _request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        async def send() -> Any:
            data = None if body is None else json.dumps(body)
            async with self.emulator.request(method, path, data=data,
                                             headers={"Content-Type": content_type}) as response:
                payload = await response.json(content_type=None)
                if response.status >= 400:
                    raise AssertionError(f"{method} {path} -> {response.status}: {payload.get('message')}")
                return payload
        return self._call(send())

    def apply(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        namespace = obj.setdefault("metadata", {}).setdefault("namespace", "default")
        return dict(self._request("POST", resource_path(resource, namespace), obj))

    def patch(self, resource: str, namespace: str, name: str, patch: dict[str, Any],
              subresource: str | None = None) -> dict[str, Any]:
        path = resource_path(resource, namespace, name) + (f"/{subresource}" if subresource else "")
        return dict(self._request("PATCH", path, patch, "application/merge-patch+json"))

    def delete(self, resource: str, namespace: str, name: str) -> None:
        self._request("DELETE", resource_path(resource, namespace, name))

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        async def read() -> dict[str, Any] | None:
            key = (kmock.resource(resource), namespace, name)
            if key not in self.emulator.objects or self.emulator.objects[key].deleted:
                return None
            return copy.deepcopy(self.emulator.objects[key].raw)
        return self._call(read())

    def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        wanted = kmock.resource(resource)

        async def read() -> list[dict[str, Any]]:
            return [copy.deepcopy(obj.raw) for (res, ns, _), obj in self.emulator.objects.items()
                    if res == wanted and not obj.deleted and (namespace is None or ns == namespace)]
        return self._call(read())

    def requests(self, method: str, path_part: str) -> builtins.list[tuple[str, dict[str, str]]]:
        """Requests the operator sent (not the test): (path, query params), oldest first."""
        async def read() -> builtins.list[tuple[str, dict[str, str]]]:
            return [(path, params) for verb, path, params, agent in self.emulator.served
                    if verb == method.upper() and path_part in path and not agent.startswith("kmock/")]
        return self._call(read())

    def events(self, name: str, namespace: str = "default") -> builtins.list[dict[str, Any]]:
        """Events about the object `name`, oldest first."""
        return [e for e in self.list("v1/events", namespace) if e.get("involvedObject", {}).get("name") == name]

    def event_reasons(self, name: str, namespace: str = "default") -> builtins.list[str]:
        return [e.get("reason", "") for e in self.events(name, namespace)]

    def fail_next(self, method: str, path_part: str, status: int = 500) -> None:
        """Answer the next `method` request whose path contains `path_part` with `status`, storing nothing."""
        async def add() -> None:
            self.emulator.failures.append((method.upper(), path_part, status))
        self._call(add())

    def set_log(self, namespace: str, pod: str, text: str) -> None:
        self.emulator.pod_logs[(namespace, pod)] = text

    def wait_for(self, what: str, predicate: Callable[[], T | None], timeout: float = 15) -> T:
        return wait_for(what, predicate, timeout)

    @contextmanager
    def operator(self, settings: Any, metrics: Any = None) -> Iterator[Any]:
        """`running_operator` that, before stopping, lets the operator finish what it is doing:
        a handler still in flight at exit makes kopf wait seconds for its "hung" task; a quiet
        moment first makes the stop take milliseconds."""
        with running_operator(settings, metrics) as runner:
            yield runner
            self.wait_quiet()

    def wait_quiet(self, quiet: float = 0.25, timeout: float = 3) -> None:
        """Wait until the operator has sent no request for `quiet` seconds (at most `timeout`)."""
        async def count() -> int:
            return len(self.emulator.served)
        deadline = time.monotonic() + timeout
        seen, since = self._call(count()), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self._call(count())
            if now != seen:
                seen, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "kmock", "user": {}}],
            "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock"}}],
        }))
        return path


@contextmanager
def emulated_cluster() -> Iterator[Cluster]:
    """A fresh emulator on a loopback port, served from its own thread for the `with` block."""
    loop = asyncio.new_event_loop()
    stop = threading.Event()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def serve() -> None:
        async with KubetuneEmulator() as emulator, kmock.Server(emulator) as server:
            holder["cluster"] = Cluster(emulator, loop, str(server.url).rstrip("/"))
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(serve())
        except BaseException as exc:  # surfaced to the test through `holder`
            holder["error"] = exc
            ready.set()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="kmock-emulator", daemon=True)
    thread.start()
    if not ready.wait(10) or "error" in holder:
        raise RuntimeError(f"the Kubernetes emulator did not start: {holder.get('error')!r}")
    try:
        yield holder["cluster"]
    finally:
        stop.set()
        thread.join(10)


def quick_kopf_settings() -> Any:
    """kopf settings for tests: short batching and timeouts, so reactions take milliseconds."""
    import kopf

    settings = kopf.OperatorSettings()
    settings.batching.batch_window = 0.05
    settings.batching.idle_timeout = 1.0
    settings.batching.exit_timeout = 1.0
    settings.watching.connect_timeout = 5
    settings.watching.reconnect_backoff = 0.2
    settings.networking.request_timeout = 10
    settings.posting.idle_timeout = 0.2
    return settings


@contextmanager
def running_operator(settings: Any, metrics: Any = None) -> Iterator[Any]:
    """The real kubetune operator (kopf, our registry) against the cluster $KUBECONFIG names."""
    from kopf.testing import KopfRunner

    from kubetune.handlers.main import build_registry

    registry = build_registry(settings, metrics)
    scope = [f"--namespace={ns}" for ns in settings.namespaces] or ["--all-namespaces"]
    runner = KopfRunner(["run", *scope, "--standalone"], registry=registry,
                        settings=quick_kopf_settings(), timeout=30)
    with runner:
        yield runner


# --- Playing the Job controller and the kubelet --------------------------------------------------------------

JOBS = "batch/v1/jobs"
PODS = "v1/pods"


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def start_pod(cluster: Cluster, job: dict[str, Any], suffix: str = "a1b2c", index: int | None = None) -> str:
    """Create the Pod the Job controller would: the template's labels, owned by the Job. Pending.

    `index`: the Pod's completion index in an Indexed Job (as an annotation and a label).
    """
    meta = job["metadata"]
    template = job["spec"]["template"]
    name = f"{meta['name']}-{suffix}" if index is None else f"{meta['name']}-{index}-{suffix}"
    indexed = {} if index is None else {"batch.kubernetes.io/job-completion-index": str(index)}
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": meta["namespace"], "annotations": dict(indexed),
            "labels": {**template["metadata"].get("labels", {}), "batch.kubernetes.io/job-name": meta["name"],
                       **indexed},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                                 "uid": meta["uid"], "controller": True}],
        },
        "spec": template["spec"],
        "status": {"phase": "Pending"},
    }
    cluster.apply(PODS, pod)
    return name


def set_container(cluster: Cluster, namespace: str, pod: str, phase: str, state: dict[str, Any],
                  conditions: list[dict[str, Any]] | None = None) -> None:
    """Set the Pod's phase and its (single) container's state, as the kubelet reports them."""
    container = cluster.get(PODS, namespace, pod)["spec"]["containers"][0]["name"]  # type: ignore[index]
    status: dict[str, Any] = {"phase": phase, "containerStatuses": [{"name": container, "state": state}]}
    if conditions is not None:
        status["conditions"] = conditions
    cluster.patch(PODS, namespace, pod, {"status": status}, subresource="status")


def run_container(cluster: Cluster, namespace: str, pod: str) -> None:
    set_container(cluster, namespace, pod, "Running", {"running": {"startedAt": _stamp()}})


def wait_container(cluster: Cluster, namespace: str, pod: str, reason: str, message: str) -> None:
    set_container(cluster, namespace, pod, "Pending", {"waiting": {"reason": reason, "message": message}})


def terminate_container(cluster: Cluster, namespace: str, pod: str, *, exit_code: int, message: str = "",
                        reason: str | None = None) -> None:
    terminated = {"exitCode": exit_code, "reason": reason or ("Completed" if exit_code == 0 else "Error"),
                  "message": message, "startedAt": _stamp(), "finishedAt": _stamp()}
    set_container(cluster, namespace, pod, "Succeeded" if exit_code == 0 else "Failed", {"terminated": terminated})


def unschedulable(cluster: Cluster, namespace: str, pod: str, message: str) -> None:
    cluster.patch(PODS, namespace, pod, {"status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]}},
        subresource="status")


def job_active(cluster: Cluster, namespace: str, job: str) -> None:
    cluster.patch(JOBS, namespace, job, {"status": {"active": 1, "startTime": _stamp()}}, subresource="status")


def job_finished(cluster: Cluster, namespace: str, job: str, *, succeeded: bool, reason: str = "",
                 message: str = "") -> None:
    now = _stamp()
    if succeeded:
        status = {"active": 0, "succeeded": 1, "completionTime": now, "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
            {"type": "Complete", "status": "True", "lastTransitionTime": now}]}
    else:
        status = {"active": 0, "failed": 1, "conditions": [
            {"type": "Failed", "status": "True", "reason": reason or "BackoffLimitExceeded",
             "message": message or "Job has reached the specified backoff limit", "lastTransitionTime": now}]}
    cluster.patch(JOBS, namespace, job, {"status": status}, subresource="status")
