"""What the control-plane benchmark runs against and starts, and how it reads them.

- `EmulatedApi`: the wiring tests' emulator (tests/support/kube_emulator.py) in this process,
  on a thread of its own, with hooks that stamp creates and time every request it serves; it
  records every request (client, verb, path) and every watch event it sends (to whom, kind).
- `ClusterApi`: a real API server through the `kubernetes` client (creates, and Jobs seen
  through a watch).
- `cluster_agents`: the emulated cluster's Job controller, scheduler and kubelet in a process
  of their own (tests/support/cluster_agents.py), as a real control plane's are.
- `operator_process`: `kubetune operator` in its own process, under bench.operator_probe
  (its handler thread pool timed), with its metrics served so reconcile passes can be read.
- `baseline_process`: the by-hand baseline (bench.direct_controller) in its own process.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench.common import REPO_ROOT, child_env, process_rss_mb

TUNINGJOBS = "kubetune.io/v1alpha1/tuningjobs"
TESTS = REPO_ROOT / "tests"


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU of a process (or one of its threads), from /proc."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid is not None else f"/proc/{pid}/stat"
    stat = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as the kubelet stops a container; SIGKILL if it has not exited 30 s later."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ApiReading:
    """The emulator's counters at one moment (a real cluster gives none)."""

    cpu: float = 0.0
    served: int = 0  # requests answered so far (index into the request record)
    service_seconds: float = 0.0
    delivered: collections.Counter[tuple[str, str, str]] = field(default_factory=collections.Counter)


class Api(Protocol):
    kubeconfig: Path

    def create_tuningjobs(self, objs: list[dict[str, Any]]) -> None: ...
    def tuningjob_times(self) -> dict[str, float]: ...
    def job_times(self) -> dict[str, float]: ...  # TuningJob name (the Job's owner) -> time
    def reading(self) -> ApiReading | None: ...
    def requests(self, since: ApiReading, until: ApiReading) -> list[tuple[str, str, dict[str, str], str]]: ...
    def runs_started(self, names: list[str], full: bool) -> int: ...


class EmulatedApi:
    """The wiring tests' emulator, with hooks that stamp creates and time every request it serves."""

    def __init__(self, cluster: Any, folder: Path, *, keep_request_log: bool) -> None:
        self.cluster = cluster
        self.emulator = cluster.emulator
        self.kubeconfig = cluster.kubeconfig(folder / "kubeconfig")
        self._tuningjobs: dict[str, float] = {}
        self._jobs: dict[str, float] = {}
        self._service_seconds = 0.0
        self._thread_id = self._call(self._native_id())
        on_create = self.emulator._on_create
        handle = self.emulator._handle

        def stamped_create(data: dict[str, Any]) -> None:
            on_create(data)
            meta = data.get("metadata", {})
            if data.get("kind") == "TuningJob":
                self._tuningjobs[meta.get("name", "")] = time.monotonic()
            elif data.get("kind") == "Job":
                owners = meta.get("ownerReferences") or [{}]
                self._jobs[owners[0].get("name", "")] = time.monotonic()

        # The rig drops answered requests from kmock's log unless told to keep them: kmock matches a
        # request against each reaction by scanning every request it has ever served
        # (`request in reaction`), quadratic in the log.
        self.emulator.keep_request_log = keep_request_log

        async def timed_handle(request: Any) -> Any:
            started = time.perf_counter()
            try:
                return await handle(request)
            finally:
                if getattr(request, "action", None) != "WATCH":  # streams are long-lived: no service time
                    self._service_seconds += time.perf_counter() - started

        # Instance attributes shadow the methods; the emulator calls them through `self`.
        self.emulator._on_create = stamped_create
        self.emulator._handle = timed_handle

    @staticmethod
    async def _native_id() -> int:
        return threading.get_native_id()

    def _call(self, coro: Any, timeout: float = 600) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.cluster.loop).result(timeout)

    def create_tuningjobs(self, objs: list[dict[str, Any]]) -> None:
        """POST them all concurrently (a `kubectl apply -f` of many documents, or many users at once).

        From this thread's own event loop, as a client elsewhere would: the emulator's loop
        serves the requests and does none of the client's work.
        """
        import aiohttp

        from support.kube_client import resource_path

        async def post(session: aiohttp.ClientSession, obj: dict[str, Any]) -> None:
            url = self.cluster.url + resource_path(TUNINGJOBS, obj["metadata"]["namespace"])
            async with session.post(url, data=json.dumps(obj),
                                    headers={"Content-Type": "application/json"}) as response:
                if response.status >= 400:
                    raise RuntimeError(f"POST {obj['metadata']['name']}: {response.status} {await response.text()}")

        async def post_all() -> None:
            connector = aiohttp.TCPConnector(limit=len(objs))
            async with aiohttp.ClientSession(connector=connector, headers={"User-Agent": "kubectl/v1.32.0"}) \
                    as session:
                await asyncio.gather(*(post(session, obj) for obj in objs))

        asyncio.run(post_all())

    def tuningjob_times(self) -> dict[str, float]:
        return dict(self._tuningjobs)

    def job_times(self) -> dict[str, float]:
        return dict(self._jobs)

    def reading(self) -> ApiReading:
        async def read() -> ApiReading:
            return ApiReading(cpu=cpu_seconds(os.getpid(), self._thread_id), served=len(self.emulator.served),
                              service_seconds=self._service_seconds,
                              delivered=collections.Counter(self.emulator.delivered))
        return self._call(read())

    def requests(self, since: ApiReading, until: ApiReading) -> list[tuple[str, str, dict[str, str], str]]:
        async def read() -> list[tuple[str, str, dict[str, str], str]]:
            return list(self.emulator.served[since.served:until.served])
        return self._call(read())

    def runs_started(self, names: list[str], full: bool) -> int:
        """How many of these runs have started as far as cluster and operator go: the Job counts
        its Pod (ready with a kubelet, active without) and the TuningJob shows it (Running, or
        Starting without a kubelet)."""
        import kmock

        from kubetune.builders import training_job_name

        jobs, tuningjobs = kmock.resource("batch/v1/jobs"), kmock.resource(TUNINGJOBS)
        counter, phase = ("ready", "Running") if full else ("active", "Starting")

        def status(resource: Any, name: str) -> dict[str, Any]:
            key = (resource, "default", name)
            if key not in self.emulator.objects or self.emulator.objects[key].deleted:
                return {}
            return self.emulator.objects[key].raw.get("status") or {}

        async def count() -> int:
            return sum(1 for name in names if status(jobs, training_job_name(name)).get(counter) == 1
                       and status(tuningjobs, name).get("phase") == phase)
        return self._call(count())


@contextmanager
def emulated_api(folder: Path, *, keep_request_log: bool) -> Iterator[EmulatedApi]:
    sys.path.insert(0, str(TESTS))
    from support.kube_cluster import emulated_cluster

    # The cluster's components run in a process of their own (cluster_agents), not on the
    # emulator's loop: a real control plane's are processes of their own.
    with emulated_cluster(job_controller=False) as cluster:
        # As the operator does at start (kubetune.handlers.main): the emulator stands in for an
        # API server, and full GC passes over this process's imports are not part of one.
        gc.collect()
        gc.freeze()
        yield EmulatedApi(cluster, folder, keep_request_log=keep_request_log)


def _started(command: list[str], log: Path, what: str) -> subprocess.Popen[bytes]:
    """A child process with the rig's import path, once it has printed "ready"."""
    env = child_env(PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO_ROOT / "operator"), str(REPO_ROOT)]))
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=TESTS)
    deadline = time.monotonic() + 30
    while "ready" not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            raise RuntimeError(f"{what} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    return process


@contextmanager
def cluster_agents(url: str, traffic: str, folder: Path, *, rate_limits: bool) -> Iterator[subprocess.Popen[bytes]]:
    """The Job controller (and with `full` traffic a scheduler and a kubelet) in their own process."""
    command = [sys.executable, "-m", "support.cluster_agents", "--url", url, "--traffic", traffic]
    command += [] if rate_limits else ["--no-rate-limits"]
    process = _started(command, folder / "cluster-agents.log", "the cluster agents")
    try:
        yield process
    finally:
        stop_process(process)


class ChildProcess:
    """A process the benchmark started and waits on: `check` fails the run, with its log, once it has exited."""

    what = "a child process"

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.pid = process.pid
        self.log = log

    def check(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.what} exited ({self.process.returncode}):\n{self.log.read_text()[-3000:]}")


class BaselineProcess(ChildProcess):
    """bench.direct_controller: what any controller has to do per TuningJob, and nothing else."""

    what = "the baseline"


@contextmanager
def baseline_process(url: str, namespace: str, names: list[str], folder: Path) -> Iterator[BaselineProcess]:
    """The by-hand baseline, its watch open, expecting the TuningJobs `names`; as many in hand as the
    operator's default workers."""
    from kubetune.settings import Settings

    names_file = folder / "baseline-names.txt"
    names_file.write_text("\n".join(names))
    command = [sys.executable, "-m", "bench.direct_controller", url, namespace, str(names_file),
               str(Settings().workers)]
    log = folder / "baseline.log"
    process = _started(command, log, "the by-hand baseline")
    try:
        yield BaselineProcess(process, log)
    finally:
        stop_process(process)


# --- a real cluster ------------------------------------------------------------------------------

class ClusterApi:
    """A real API server: creates through the `kubernetes` client, Jobs seen through a watch."""

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        import kubernetes

        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        self.custom = kubernetes.client.CustomObjectsApi(self.client)
        self.batch = kubernetes.client.BatchV1Api(self.client)
        self._tuningjobs: dict[str, float] = {}
        self._jobs: dict[str, float] = {}
        self._stop = threading.Event()
        core = kubernetes.client.CoreV1Api(self.client)
        try:
            core.create_namespace(kubernetes.client.V1Namespace(metadata={"name": namespace}))
        except kubernetes.client.ApiException as error:
            if error.status != 409:
                raise
        self._watcher = threading.Thread(target=self._watch_jobs, daemon=True)
        self._watcher.start()

    def _watch_jobs(self) -> None:
        import kubernetes

        while not self._stop.is_set():
            watch = kubernetes.watch.Watch()
            for event in watch.stream(self.batch.list_namespaced_job, self.namespace, timeout_seconds=5):
                owners = event["object"].metadata.owner_references or []
                if event["type"] == "ADDED" and owners:
                    self._jobs.setdefault(owners[0].name, time.monotonic())

    def create_tuningjobs(self, objs: list[dict[str, Any]]) -> None:
        from concurrent.futures import ThreadPoolExecutor

        def create(obj: dict[str, Any]) -> None:
            self.custom.create_namespaced_custom_object("kubetune.io", "v1alpha1", self.namespace, "tuningjobs", obj)
            self._tuningjobs[obj["metadata"]["name"]] = time.monotonic()  # when the API server answered

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(create, objs))

    def tuningjob_times(self) -> dict[str, float]:
        return dict(self._tuningjobs)

    def job_times(self) -> dict[str, float]:
        return dict(self._jobs)

    def reading(self) -> ApiReading | None:
        return None

    def requests(self, since: ApiReading, until: ApiReading) -> list[tuple[str, str, dict[str, str], str]]:
        return []

    def runs_started(self, names: list[str], full: bool) -> int:
        return len(names)  # the real cluster's own pace: not waited for

    def clean_up(self) -> None:
        self._stop.set()
        for name in self._tuningjobs:
            self.custom.delete_namespaced_custom_object("kubetune.io", "v1alpha1", self.namespace, "tuningjobs", name)


# --- the operator process ------------------------------------------------------------------------

@dataclass
class OperatorReading:
    cpu: float
    loop_cpu: float  # the main thread: kopf's event loop
    rss: float
    passes: float  # TuningJob reconcile passes so far
    pass_seconds: float


class OperatorProcess(ChildProcess):
    what = "the operator"

    def __init__(self, process: subprocess.Popen[bytes], metrics_port: int, probe: Path, log: Path) -> None:
        super().__init__(process, log)
        self.metrics_port = metrics_port
        self.probe = probe

    def _metric(self, text: str, name: str) -> float:
        match = re.search(rf'^{name}\{{kind="TuningJob"\}} (\S+)$', text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    def reading(self) -> OperatorReading:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as answer:
                text = answer.read().decode()
        except OSError:
            text = ""
        return OperatorReading(cpu=cpu_seconds(self.pid), loop_cpu=cpu_seconds(self.pid, self.pid),
                               rss=process_rss_mb(self.pid)[0],
                               passes=self._metric(text, "kubetune_reconcile_duration_seconds_count"),
                               pass_seconds=self._metric(text, "kubetune_reconcile_duration_seconds_sum"))


@contextmanager
def operator_process(kubeconfig: Path, folder: Path, profile: Path | None = None) -> Iterator[OperatorProcess]:
    metrics_port = free_port()
    log, probe = folder / "operator.log", folder / "operator-probe.json"
    env = child_env(KUBECONFIG=str(kubeconfig), KUBETUNE_METRICS_PORT=str(metrics_port), KUBETUNE_HEALTH_PORT="0")
    # cProfile sees the operator's event loop thread (kopf), not the handler threads.
    profiler = ["-m", "cProfile", "-o", str(profile)] if profile else []
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, *profiler, "-m", "bench.operator_probe", str(probe)], stdout=out,
                                   stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
        try:
            yield OperatorProcess(process, metrics_port, probe, log)
        finally:
            stop_process(process)
