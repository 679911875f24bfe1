"""The wiring tests' cluster: the emulated API server and a Job controller, on a thread of their own.

`emulated_cluster()` serves a `KubetuneEmulator` on a loopback port from its own event loop in
a thread, so tests stay synchronous and the operator (`kopf.testing.KopfRunner`, another
thread) can never be starved by a test waiting. Beside it runs a Job controller
(`job_controller.JobController`, an HTTP client like kube-controller-manager): the Job's Pods,
its status updates and their watch events are a real cluster's. The test plays the scheduler
and the kubelet (`kubelet_plays`); the benchmark runs a simulated node for that
(`cluster_agents`). The requests of these components, and the test's own, are told apart from
the operator's by their User-Agent (`Cluster.requests` lists only the operator's).
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import json
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import kmock

from kubetune.settings import Settings
from support.job_controller import JobController
from support.job_rules import MAX_API_BACKOFF, POD_FAILURE_BACKOFF, SYNC_BATCH_PERIOD
from support.kube_client import CONTROLLER_MANAGER_AGENT, RigClient, is_rig_agent, resource_path
from support.kube_emulator import KubetuneEmulator
from support.kube_rbac import Authorizer

T = TypeVar("T")
JOBS = "batch/v1/jobs"
PODS = "v1/pods"


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


class Cluster:
    """The test's side of the emulated API: apply, patch and delete over HTTP (so watchers see
    it), read the in-memory objects directly (so reads cost no requests), and wait for states."""

    def __init__(self, emulator: KubetuneEmulator, loop: asyncio.AbstractEventLoop, url: str) -> None:
        self.emulator = emulator
        self.loop = loop
        self.url = url
        self.job_controller: JobController | None = None

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

    def post(self, resource: str, namespace: str, name: str, subresource: str, body: dict[str, Any]) -> Any:
        """POST to a subresource (pods/{name}/binding)."""
        return self._request("POST", f"{resource_path(resource, namespace, name)}/{subresource}", body)

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

    def history(self, resource: str, namespace: str, name: str) -> builtins.list[dict[str, Any]]:
        """Every stored version of the object, oldest first (a version per write, as watchers saw them)."""
        async def read() -> builtins.list[dict[str, Any]]:
            key = (kmock.resource(resource), namespace, name)
            if key not in self.emulator.objects:
                return []
            return [copy.deepcopy(dict(v.raw)) for v in self.emulator.objects[key].history if v is not None]
        return self._call(read())

    def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        wanted = kmock.resource(resource)

        async def read() -> list[dict[str, Any]]:
            return [copy.deepcopy(obj.raw) for (res, ns, _), obj in self.emulator.objects.items()
                    if res == wanted and not obj.deleted and (namespace is None or ns == namespace)]
        return self._call(read())

    def requests(self, method: str, path_part: str) -> builtins.list[tuple[str, dict[str, str]]]:
        """Requests the operator sent (not the test, not the cluster's own components): (path, query
        params), oldest first."""
        async def read() -> builtins.list[tuple[str, dict[str, str]]]:
            return [(path, params) for verb, path, params, agent in self.emulator.served
                    if verb == method.upper() and path_part in path and not is_rig_agent(agent)]
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

    def stop_job_controller(self) -> None:
        """From now on no Job controller acts: for a test that counts what the operator alone does."""
        if self.job_controller is not None:
            self._call(self.job_controller.stop())
            self.job_controller = None

    def wait_quiet(self, quiet: float = 0.25, timeout: float = 3) -> None:
        """Wait until the operator has sent no request for `quiet` seconds (at most `timeout`)."""
        async def count() -> int:
            return sum(1 for *_, agent in self.emulator.served if not is_rig_agent(agent))
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


# The wiring tests' Job controller: Pod changes batched for 0.1 s rather than 1 s (the same
# writes, sooner), and failed Pods replaced after 1 s rather than 10 s: the least that keeps a
# replacement's creationTimestamp (whole seconds) after its predecessor's, as on a real cluster.
WIRING_BATCH_PERIOD = 0.1
WIRING_POD_FAILURE_BACKOFF = 1.0
WIRING_MAX_API_BACKOFF = 1.0


@contextmanager
def emulated_cluster(*, job_controller: bool = True, batch_period: float = SYNC_BATCH_PERIOD,
                     pod_failure_backoff: float = POD_FAILURE_BACKOFF, max_api_backoff: float = MAX_API_BACKOFF,
                     authorizer: Authorizer | None = None) -> Iterator[Cluster]:
    """A fresh emulator on a loopback port, served from its own thread for the `with` block,
    with a Job controller unless told otherwise (it runs on the emulator's loop, over HTTP).
    With an `authorizer` (RBAC) the operator may do only what it grants."""
    loop = asyncio.new_event_loop()
    stop = threading.Event()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def serve() -> None:
        async with KubetuneEmulator() as emulator, kmock.Server(emulator) as server:
            emulator.authorizer = authorizer
            cluster = Cluster(emulator, loop, str(server.url).rstrip("/"))
            if job_controller:
                cluster.job_controller = JobController(RigClient(cluster.url, CONTROLLER_MANAGER_AGENT),
                                                       batch_period=batch_period,
                                                       pod_failure_backoff=pod_failure_backoff,
                                                       max_api_backoff=max_api_backoff)
                await cluster.job_controller.start()
            holder["cluster"] = cluster
            ready.set()
            try:
                while not stop.is_set():
                    await asyncio.sleep(0.05)
            finally:
                if cluster.job_controller is not None:
                    await cluster.job_controller.stop()

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
