"""The HTTP client the emulated cluster's own components (Job controller, scheduler, kubelet) use.

A real control plane's components are clients of the API server like the operator: every Pod
they create and every status they write is a request, stored, and sent to every watcher. So
the emulated ones talk to the emulator over loopback HTTP too, never behind its back, and each
says who it is in its User-Agent (the tests count the operator's requests apart from theirs).

Like client-go, a client may be rate-limited (a token bucket: `qps`, `burst`): a
kube-controller-manager sends at most 20 requests/s (burst 30) by default, a kubelet and a
scheduler 50 (burst 100). Without a limit a burst of work reaches the API server at once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

MERGE_PATCH = "application/merge-patch+json"
K8S_VERSION = "v1.33.0"
# The User-Agents of the emulated cluster's components, as client-go builds them.
CONTROLLER_MANAGER_AGENT = f"kube-controller-manager/{K8S_VERSION} (linux/amd64) kubernetes/emulated/job-controller"
SCHEDULER_AGENT = f"kube-scheduler/{K8S_VERSION} (linux/amd64) kubernetes/emulated/scheduler"
KUBELET_AGENT = f"kubelet/{K8S_VERSION} (linux/amd64) kubernetes/emulated"
# Requests with these agents are the rig's (the test itself goes through kmock's own client).
RIG_AGENT_PREFIXES = ("kmock/", "kube-controller-manager/", "kube-scheduler/", "kubelet/")


def is_rig_agent(agent: str) -> bool:
    return agent.startswith(RIG_AGENT_PREFIXES)


def resource_path(resource: str, namespace: str | None, name: str | None = None) -> str:
    """`v1/pods` or `batch/v1/jobs` or `kubetune.io/v1alpha1/tuningjobs` -> the API path."""
    parts = resource.split("/")
    base = f"/api/{parts[0]}" if len(parts) == 2 else f"/apis/{parts[0]}/{parts[1]}"
    path = f"{base}/namespaces/{namespace}/{parts[-1]}" if namespace else f"{base}/{parts[-1]}"
    return f"{path}/{name}" if name else path


@dataclass(frozen=True)
class RateLimit:
    """client-go's token bucket: `burst` requests at once, then `qps` per second."""

    qps: float
    burst: int


# The defaults of the components' own flags (--kube-api-qps / --kube-api-burst; the kubelet's
# --event-qps / --event-burst for its Events): what a kubeadm or kind cluster runs with.
CONTROLLER_MANAGER_LIMIT = RateLimit(qps=20, burst=30)
SCHEDULER_LIMIT = RateLimit(qps=50, burst=100)
KUBELET_LIMIT = RateLimit(qps=50, burst=100)


class _TokenBucket:
    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.tokens = float(limit.burst)
        self.updated = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self) -> None:
        async with self.lock:  # first come, first served, as client-go's limiter
            now = time.monotonic()
            self.tokens = min(self.limit.burst, self.tokens + (now - self.updated) * self.limit.qps)
            self.updated = now
            if self.tokens < 1:
                wait = (1 - self.tokens) / self.limit.qps
                await asyncio.sleep(wait)
                self.tokens += wait * self.limit.qps
                self.updated = time.monotonic()
            self.tokens -= 1


class ApiError(Exception):
    def __init__(self, status: int, method: str, path: str, message: str) -> None:
        super().__init__(f"{method} {path} -> {status}: {message}")
        self.status = status
        self.message = message  # the API server's own words (a Status's message)


class RigClient:
    """An API client for one emulated component. Create and use it on one event loop."""

    def __init__(self, url: str, agent: str, limit: RateLimit | None = None) -> None:
        self.url = url.rstrip("/")
        self.agent = agent
        self._bucket = _TokenBucket(limit) if limit is not None else None
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No limit on connections: a real client multiplexes its requests over HTTP/2.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                                  headers={"User-Agent": self.agent})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, body: Any = None, *, content_type: str = "application/json",
                      params: dict[str, str] | None = None) -> Any:
        if self._bucket is not None:
            await self._bucket.take()
        data = None if body is None else json.dumps(body)
        async with self.session.request(method, self.url + path, data=data, params=params,
                                        headers={"Content-Type": content_type}) as response:
            text = await response.text()
            if response.status >= 400:
                try:
                    message = json.loads(text).get("message", text)
                except ValueError:
                    message = text
                raise ApiError(response.status, method, path, str(message))
            return json.loads(text) if text else None

    async def create(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        namespace = obj["metadata"].get("namespace")
        return dict(await self.request("POST", resource_path(resource, namespace), obj))

    async def patch(self, resource: str, namespace: str, name: str, patch: dict[str, Any],
                    subresource: str | None = None) -> dict[str, Any]:
        path = resource_path(resource, namespace, name) + (f"/{subresource}" if subresource else "")
        return dict(await self.request("PATCH", path, patch, content_type=MERGE_PATCH))

    async def delete(self, resource: str, namespace: str, name: str) -> None:
        await self.request("DELETE", resource_path(resource, namespace, name))

    async def list(self, resource: str) -> tuple[list[dict[str, Any]], str]:
        """Every object of the resource in all namespaces, and the list's resourceVersion."""
        answer = await self.request("GET", resource_path(resource, None))
        return list(answer.get("items") or []), str((answer.get("metadata") or {}).get("resourceVersion") or "")

    async def watch(self, resource: str, since: str) -> AsyncIterator[dict[str, Any]]:
        """Watch events ({type, object}) of the resource in all namespaces after `since`; never ends on its own."""
        params = {"watch": "true", "resourceVersion": since, "allowWatchBookmarks": "false"}
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with self.session.get(self.url + resource_path(resource, None), params=params,
                                    timeout=timeout) as response:
            if response.status >= 400:
                raise ApiError(response.status, "WATCH", resource, await response.text())
            async for line in response.content:
                if line.strip():
                    yield json.loads(line)
