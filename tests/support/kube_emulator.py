"""A Kubernetes API on loopback for the operator wiring tests: kmock's emulator, patched up.

kmock's `KubernetesEmulator` keeps objects in memory and serves create/get/list/patch/delete
and watch streams, but leaves gaps a real API server fills. `KubetuneEmulator` fills the ones
the operator and the `kubernetes` client trip over:

- `uid`, `resourceVersion`, `creationTimestamp`, `generation` on create; `generation`
  bumped on spec changes (not on status or metadata patches), `resourceVersion` on every write;
- `generateName` honoured (kopf names its Events that way; without it the second Event clashes);
- Jobs and Pods get the API server's defaults at create (`kube_objects`: the Job's selector and
  controller labels, pod template defaults, a Pod's QoS class and tolerations);
- `pods/{name}/binding` (the scheduler's) sets the node and PodScheduled in one write;
- list answers carry `kind: <Kind>List` and `apiVersion`;
- label selectors honoured on lists and watches (kmock ignores them), field selectors
  (`involvedObject.name=x,reason=y`, equality only) on lists;
- `refused_pods` (namespace -> why) refuses every Pod created there with 403, as a ResourceQuota
  without room does (the Job controller then posts FailedCreate);
- a watch starting at the resourceVersion of a list gets only later changes (kmock replays every
  object as ADDED, and kopf then patches a stale version);
- a JSON patch whose `test` op fails (kopf's optimistic concurrency) answers 422, not 500;
- `authorizer` (optional) answers the operator's requests that its RBAC rules do not cover with
  403 Forbidden, as a real API server does (`kube_rbac`); `denied` lists what it refused;
- `failures` makes the next matching request of the operator fail before anything is stored
  (an API server error), so tests can show the operator retries;
- `pods/{name}/log` answers the text in `pod_logs` (kmock would answer the Pod's JSON),
  honouring `tailLines`;
- an object is looked up by its key, and the served resources are known without scanning
  every stored object;
- a request is matched against the reactions on its own: kmock scans its whole request log
  for every reaction to decide whether the request is "seen" by it (`request in reaction`),
  quadratic in the log, and a burst of concurrent requests is all in that log at once; here
  each request's task sees only itself, and kmock's log is not kept. `served` keeps what the
  tests ask about (method, path, query, client) for every request.

There is no garbage collector, no graceful Pod deletion and no schema validation. Tests use it
through `kube_cluster`, which also runs the emulated Job controller beside it.
"""

from __future__ import annotations

import collections
import contextvars
import copy
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import jsonpatch
import kmock
from kmock._internal import rendering

from support.kube_client import is_rig_agent
from support.kube_objects import default_job, default_pod, generated_name, scheduled_patch
from support.kube_rbac import Authorizer

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
    authorizer: Authorizer | None = None  # None: every client may do anything
    refused_pods: dict[str, str]  # namespace -> the admission message every Pod created there gets
    denied: list[str]
    # Watch events sent, by (client User-Agent, object kind, event type).
    delivered: collections.Counter[tuple[str, str, str]]
    keep_request_log = False  # True: kmock's own log and matching (the benchmark can ask for it)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.pod_logs = {}
        self.served = []
        self.object_resources = set()
        self.failures = []
        self.denied = []
        self.refused_pods = {}
        self.delivered = collections.Counter()
        self.resource_version = 0
        self.resources.load_bundled()
        for key, (kind, singular, shortnames) in CRDS.items():
            self.resources[key] = kmock.ResourceInfo(
                kind=kind, singular=singular, shortnames=shortnames, namespaced=True,
                verbs=VERBS, subresources={"status"},
            )
        self[kmock.action.FETCH, kmock.resource("v1/pods"), kmock.subresource("log")] << self._serve_log
        self[kmock.method.POST, kmock.resource("v1/pods"), kmock.subresource("binding")] << self._serve_binding

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
        agent = request.headers.get("User-Agent", "")
        if self.authorizer is not None and not is_rig_agent(agent):
            method = str(getattr(request.method, "value", request.method))  # kmock's is an enum
            denial = self.authorizer.denial(method, request.url.path, request.params, request.data)
            if denial is not None:
                self.denied.append(f"{method} {request.url.path}: {denial}")
                raise kmock.KubernetesError(status=403, reason="Forbidden", message=denial)
        parts = request.url.path.strip("/").split("/")
        if request.method == "POST" and parts[:3] == ["api", "v1", "namespaces"] and parts[4:] == ["pods"] \
                and parts[3] in self.refused_pods and isinstance(request.data, dict):
            meta = request.data.get("metadata") or {}
            name = meta.get("name") or meta.get("generateName") or ""
            raise kmock.KubernetesError(status=403, reason="Forbidden",
                                        message=f'pods "{name}" is forbidden: {self.refused_pods[parts[3]]}')
        for failure in self.failures:
            method, path_part, status = failure
            if request.method == method and path_part in request.url.path and not is_rig_agent(agent):
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
            meta["name"] = generated_name(meta["generateName"])
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        meta["resourceVersion"] = self._next_version()
        meta["generation"] = 1
        if data.get("kind") == "Job" and str(data.get("apiVersion", "")).startswith("batch/"):
            default_job(data)
        elif data.get("kind") == "Pod":
            default_pod(data)

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
        agent = request.headers.get("User-Agent", "")
        selector = request.params.get("labelSelector")
        async for event in super()._serve_watch(request):
            if isinstance(event, dict):
                if floor is not None and event.get("type") == "ADDED" and \
                        int(event["object"].get("metadata", {}).get("resourceVersion") or 0) <= floor:
                    continue
                if selector and not _selected(event["object"], selector):
                    continue
                self.delivered[(agent, str(event["object"].get("kind")), str(event.get("type")))] += 1
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
        fields = request.params.get("fieldSelector")
        if fields:
            answer["items"] = [item for item in answer["items"] if _fields_selected(item, fields)]
        return answer

    async def _serve_binding(self, request: rendering.Request) -> dict[str, Any]:
        # The scheduler's POST pods/{name}/binding: the API server sets the node and PodScheduled
        # on the Pod in one write (kmock knows no subresource writes other than its own patch).
        resource = kmock.resource("v1/pods")
        key: Any = (resource, request.namespace, request.name)
        async with self._lock:
            if key not in self._objects or self._objects[key].deleted:
                raise kmock.KubernetesObjectNotFoundError()
            pod = self._objects[key]
            node = ((request.data or {}).get("target") or {}).get("name", "")
            self._objects[key].patch(scheduled_patch(pod.raw, node) | {"metadata": {
                "resourceVersion": self._next_version()}})
            await self._buses[resource].put({"type": "MODIFIED", "object": self._objects[key].raw})
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

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


def _fields_selected(obj: dict[str, Any], selector: str) -> bool:
    """Equality field selectors (`involvedObject.name=x,reason=y`) on dotted paths."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        path, _, wanted = term.partition("=")
        value: Any = obj
        for part in path.rstrip("=").split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if str(value if value is not None else "") != wanted.lstrip("="):
            return False
    return True
