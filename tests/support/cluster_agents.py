"""The benchmark's cluster side: the Job controller, a scheduler and a kubelet, in a process of their own.

    python -m support.cluster_agents --url http://127.0.0.1:PORT [--traffic jobs|full] [--no-rate-limits]

As on a real control plane, each component is a separate client of the API server with its
own User-Agent and client-side rate limit (kube_client): kube-controller-manager's Job
controller (`job_controller`), the scheduler (binds every new Pod to the node: one write, and
a Scheduled Event through events.k8s.io/v1) and the kubelet (ContainerCreating, then after a
start-up delay Running and ready, with the Pulled, Created and Started Events). The node has
room for every Pod (a real 2-core node would leave most of a burst Unschedulable). Pods run
until deleted: the benchmark measures runs starting, not finishing.

`--traffic jobs` runs only the Job controller (its Pods stay Pending), as a control plane
without nodes does. The process prints `ready` once its informers have listed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
from dataclasses import dataclass
from typing import Any

import aiohttp

from support.job_controller import JobController
from support.kube_client import (
    CONTROLLER_MANAGER_AGENT,
    CONTROLLER_MANAGER_LIMIT,
    KUBELET_AGENT,
    KUBELET_LIMIT,
    SCHEDULER_AGENT,
    SCHEDULER_LIMIT,
    ApiError,
    RateLimit,
    RigClient,
    resource_path,
)
from support.kube_objects import (
    NODE_NAME,
    binding,
    core_event,
    creating_state,
    kubelet_status,
    running_state,
    scheduler_event,
)

PODS = "v1/pods"


@dataclass(frozen=True)
class NodeTiming:
    """How long the node takes (seconds): scheduling a Pod, the kubelet picking it up, its
    sandbox and container starting (the image is present). A container start is drawn
    uniformly from `start`."""

    schedule: float = 0.005
    admit: float = 0.02
    start: tuple[float, float] = (0.5, 1.5)


class SimulatedNode:
    """The scheduler and the kubelet of a one-node cluster, driven by the Pods' watch events."""

    def __init__(self, url: str, *, limits: bool = True, timing: NodeTiming = NodeTiming(),
                 seed: int = 0) -> None:
        def client(agent: str, limit: RateLimit) -> RigClient:
            return RigClient(url, agent, limit if limits else None)

        self.scheduler = client(SCHEDULER_AGENT, SCHEDULER_LIMIT)
        self.scheduler_events = client(SCHEDULER_AGENT, SCHEDULER_LIMIT)  # its own event broadcaster's client
        self.kubelet = client(KUBELET_AGENT, KUBELET_LIMIT)
        self.kubelet_events = client(KUBELET_AGENT, KUBELET_LIMIT)  # --event-qps / --event-burst
        self.timing = timing
        self.random = random.Random(seed)
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self._scheduling: set[tuple[str, str]] = set()
        self._starting: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        pods, version = await self.kubelet.list(PODS)
        for pod in pods:
            self._on_pod("ADDED", pod)
        self._spawn(self._watch(version))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for client in (self.scheduler, self.scheduler_events, self.kubelet, self.kubelet_events):
            await client.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, since: str) -> None:
        while True:
            with contextlib.suppress(aiohttp.ClientError, ApiError, ValueError):
                async for event in self.kubelet.watch(PODS, since):
                    since = str(event["object"]["metadata"].get("resourceVersion") or since)
                    self._on_pod(event["type"], event["object"])
            await asyncio.sleep(0.2)

    def _on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        key = (meta.get("namespace", "default"), meta["name"])
        if kind == "DELETED" or meta.get("deletionTimestamp"):
            self.pods.pop(key, None)
            return
        self.pods[key] = pod
        if (pod.get("status") or {}).get("phase") not in (None, "Pending"):
            return
        if not pod["spec"].get("nodeName") and key not in self._scheduling:
            self._scheduling.add(key)
            self._spawn(self._schedule(key))
        elif pod["spec"].get("nodeName") == NODE_NAME and key not in self._starting:
            self._starting.add(key)
            self._spawn(self._run(key))

    async def _schedule(self, key: tuple[str, str]) -> None:
        await asyncio.sleep(self.timing.schedule)
        pod = self.pods.get(key)
        if pod is None:
            return
        namespace, name = key
        with contextlib.suppress(ApiError):
            await self.scheduler.request("POST", resource_path(PODS, namespace, name) + "/binding", binding(pod))
            await self.scheduler_events.create("events.k8s.io/v1/events", scheduler_event(pod))

    async def _kubelet_event(self, pod: dict[str, Any], reason: str, message: str) -> None:
        container = pod["spec"]["containers"][0]["name"]
        await self.kubelet_events.create("v1/events", core_event(
            pod, reason, message, component="kubelet", host=NODE_NAME, field_path=f"spec.containers{{{container}}}"))

    async def _set_status(self, key: tuple[str, str], state: dict[str, Any], *, sandbox_ready: bool) -> bool:
        pod = self.pods.get(key)
        if pod is None:
            return False
        namespace, name = key
        status = kubelet_status(pod, state, sandbox_ready=sandbox_ready)
        self.pods[key] = await self.kubelet.patch(PODS, namespace, name, {"status": status}, subresource="status")
        return True

    async def _run(self, key: tuple[str, str]) -> None:
        with contextlib.suppress(ApiError):
            await asyncio.sleep(self.timing.admit)
            if not await self._set_status(key, creating_state(), sandbox_ready=False):
                return
            await asyncio.sleep(self.random.uniform(*self.timing.start))
            pod = self.pods.get(key)
            if pod is None:
                return
            container = pod["spec"]["containers"][0]
            await self._kubelet_event(pod, "Pulled", f'Container image "{container.get("image")}" already present '
                                                     "on machine")
            await self._kubelet_event(pod, "Created", f"Created container: {container['name']}")
            if await self._set_status(key, running_state(), sandbox_ready=True):
                await self._kubelet_event(pod, "Started", f"Started container {container['name']}")


async def run_agents(url: str, *, traffic: str, limits: bool, stop: asyncio.Event) -> None:
    controller = JobController(RigClient(url, CONTROLLER_MANAGER_AGENT, CONTROLLER_MANAGER_LIMIT if limits else None))
    node = SimulatedNode(url, limits=limits) if traffic == "full" else None
    await controller.start()
    if node is not None:
        await node.start()
    print("ready", flush=True)
    try:
        await stop.wait()
    finally:
        if node is not None:
            await node.stop()
        await controller.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the API server")
    parser.add_argument("--traffic", choices=("jobs", "full"), default="full",
                        help="jobs: the Job controller only; full: also a scheduler and a kubelet (default)")
    parser.add_argument("--no-rate-limits", action="store_true",
                        help="no client-side rate limits (the components' QPS and burst)")
    args = parser.parse_args()

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run_agents(args.url, traffic=args.traffic, limits=not args.no_rate_limits, stop=stop)

    asyncio.run(serve())


if __name__ == "__main__":
    main()
