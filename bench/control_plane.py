"""Control plane: how fast the operator turns applied TuningJobs into Jobs, and what memory it holds.

The operator runs as `python -m kubetune operator` in its own process (so its RSS is its own),
with its shipped default settings, against kmock's Kubernetes emulator on loopback (the rig of
the wiring tests, tests/support/kube_emulator.py) or against a real cluster (`--kubeconfig`).

1. one warm-up TuningJob (kopf's watches are up once its Job exists);
2. a burst: `--jobs` TuningJobs POSTed at once; latency = TuningJob accepted by the API ->
   its training Job accepted by the API; p50/p99; the operator's RSS;
3. more bursts up to `--total` resources, then a settle period long enough for every
   running-run log poll (15 s) to run at least twice; RSS again.

On the emulator both moments are taken inside the API server (a hook on its create path),
so the figures carry no client-side polling delay. The emulator shares these 2 cores with the
operator and slows as its request log grows (FIELD-NOTES): the run prints the CPU each side
used and the emulator's mean service time per request, so what is the operator's is visible.

    python -m bench.control_plane                      # 200 at once, then 1,000 in all
    python -m bench.control_plane --jobs 50 --total 200
    python -m bench.control_plane --kubeconfig ~/.kube/config --namespace kubetune-bench
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from bench.common import REPO_ROOT, Figure, child_env, machine_line, package_versions, print_table, process_rss_mb

TUNINGJOBS = "kubetune.io/v1alpha1/tuningjobs"
GOAL_P99_SECONDS = 1.0
GOAL_RSS_MB = 150.0
STATUS_REFRESH_SECONDS = 15  # the operator's default (KUBETUNE_STATUS_REFRESH_SECONDS)


def tuningjob(name: str, namespace: str) -> dict[str, Any]:
    """A TuningJob the operator can start at once: scratch model, inline pvc data, pvc output (no Dataset wait)."""
    return {
        "apiVersion": "kubetune.io/v1alpha1", "kind": "TuningJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "baseModel": {"scratch": {}},
            "datasets": {"train": [{"source": {"pvc": {"claimName": "bench-data", "path": "train.jsonl"}},
                                    "format": "messages"}]},
            "hyperparameters": {"maxSteps": 10},
            "output": {"pvc": {"claimName": "bench-models", "path": name}},
            "resources": {"gpus": 0, "cpu": "1", "memory": "2Gi"},
        },
    }


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (p99 of 200 values is the 198th smallest)."""
    ordered = sorted(values)
    rank = max(1, round(share * len(ordered) + 0.4999))
    return ordered[min(rank, len(ordered)) - 1]


class Api(Protocol):
    """What the benchmark needs from a Kubernetes API: create many, and when things were created."""

    kubeconfig: Path

    def create_tuningjobs(self, objs: list[dict[str, Any]]) -> None: ...
    def tuningjob_times(self) -> dict[str, float]: ...
    def job_times(self) -> dict[str, float]: ...  # TuningJob name (the Job's owner) -> time
    def stats(self) -> dict[str, float]: ...


# --- kmock's emulator ----------------------------------------------------------------------------

class EmulatedApi:
    """The wiring tests' emulator, with hooks that stamp creates and time every request it serves."""

    def __init__(self, cluster: Any, folder: Path, *, keep_request_log: bool) -> None:
        self.cluster = cluster
        self.emulator = cluster.emulator
        self.kubeconfig = cluster.kubeconfig(folder / "kubeconfig")
        self._tuningjobs: dict[str, float] = {}
        self._jobs: dict[str, float] = {}
        self._served = 0
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
                    self._served += 1
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
            async with aiohttp.ClientSession(connector=connector) as session:
                await asyncio.gather(*(post(session, obj) for obj in objs))

        asyncio.run(post_all())

    def tuningjob_times(self) -> dict[str, float]:
        return dict(self._tuningjobs)

    def job_times(self) -> dict[str, float]:
        return dict(self._jobs)

    def stats(self) -> dict[str, float]:
        stat = Path(f"/proc/{os.getpid()}/task/{self._thread_id}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return {"emulator_cpu_seconds": (int(stat[11]) + int(stat[12])) / ticks,
                "emulator_requests": float(self._served), "emulator_service_seconds": self._service_seconds,
                "emulator_request_log": float(len(self.emulator._requests))}


@contextmanager
def emulated_api(folder: Path, *, keep_request_log: bool) -> Iterator[EmulatedApi]:
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from support.kube_cluster import emulated_cluster

    with emulated_cluster() as cluster:
        # As the operator does at start (kubetune.handlers.main): the emulator stands in for an
        # API server, and full GC passes over this process's imports are not part of one.
        gc.collect()
        gc.freeze()
        yield EmulatedApi(cluster, folder, keep_request_log=keep_request_log)


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

    def stats(self) -> dict[str, float]:
        return {}

    def clean_up(self) -> None:
        self._stop.set()
        for name in self._tuningjobs:
            self.custom.delete_namespaced_custom_object("kubetune.io", "v1alpha1", self.namespace, "tuningjobs", name)


# --- the operator process ------------------------------------------------------------------------

@contextmanager
def operator_process(kubeconfig: Path, log: Path, profile: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    env = child_env(KUBECONFIG=str(kubeconfig), KUBETUNE_METRICS_PORT="0", KUBETUNE_HEALTH_PORT="0")
    # cProfile sees the operator's event loop thread (kopf), not the handler threads.
    profiler = ["-m", "cProfile", "-o", str(profile)] if profile else []
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, *profiler, "-m", "kubetune", "operator"], stdout=out,
                                   stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
        try:
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def wait_until(what: str, done: Callable[[], bool], timeout: float, process: subprocess.Popen[bytes],
               log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if process.poll() is not None:
            raise RuntimeError(f"the operator exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.02)


def burst(api: Api, names: list[str], namespace: str, process: subprocess.Popen[bytes], log: Path
          ) -> list[float]:
    """Create the TuningJobs at once; the apply -> Job latencies (seconds), once every Job exists."""
    api.create_tuningjobs([tuningjob(name, namespace) for name in names])
    wait_until(f"{len(names)} Jobs", lambda: all(n in api.job_times() for n in names),
               60 + 0.5 * len(names), process, log)
    applied, created = api.tuningjob_times(), api.job_times()
    return [created[n] - applied[n] for n in names]


def measure(api: Api, jobs: int, total: int, namespace: str, folder: Path, settle: float,
            profile: Path | None = None) -> list[Figure]:
    log = folder / "operator.log"
    with operator_process(api.kubeconfig, log, profile) as process:
        started = time.monotonic()
        burst(api, ["warmup"], namespace, process, log)
        print(f"operator up and creating Jobs after {time.monotonic() - started:.1f}s "
              f"(process start, imports, login, watches)")
        idle_rss, _ = process_rss_mb(process.pid)
        before, cpu_before = api.stats(), cpu_seconds(process.pid)
        burst_started = time.monotonic()
        latencies = burst(api, [f"burst-{i:04d}" for i in range(jobs)], namespace, process, log)
        burst_seconds = time.monotonic() - burst_started
        after, cpu_after = api.stats(), cpu_seconds(process.pid)
        burst_rss, _ = process_rss_mb(process.pid)
        print(f"burst of {jobs}: every Job created {burst_seconds:.2f}s after the first POST")
        created = jobs + 1
        last: list[float] = latencies
        while created < total:
            chunk = min(jobs, total - created)
            last = burst(api, [f"scale-{created + i:05d}" for i in range(chunk)], namespace, process, log)
            created += chunk
        print(f"{created} TuningJobs exist; settling {settle}s (two refresh intervals)")
        time.sleep(settle)
        scale_rss, scale_peak = process_rss_mb(process.pid)
        scale_stats = api.stats()
    figures = [
        Figure(f"apply -> Job p50 ({jobs} at once)", percentile(latencies, 0.50), "s"),
        Figure(f"apply -> Job p99 ({jobs} at once)", percentile(latencies, 0.99), "s", ("<=", GOAL_P99_SECONDS)),
        Figure(f"apply -> Job max ({jobs} at once)", max(latencies), "s"),
        Figure("Jobs created per second in the burst", jobs / burst_seconds, "/s"),
        Figure(f"apply -> Job p50 (last burst, {created} resources)", percentile(last, 0.50), "s"),
        Figure(f"apply -> Job p99 (last burst, {created} resources)", percentile(last, 0.99), "s"),
        Figure("operator RSS idle (1 TuningJob)", idle_rss, "MiB"),
        Figure(f"operator RSS after the burst ({jobs + 1})", burst_rss, "MiB"),
        Figure(f"operator RSS at {created} TuningJobs", scale_rss, "MiB", ("<=", GOAL_RSS_MB)),
        Figure(f"operator peak RSS (up to {created})", scale_peak, "MiB"),
        Figure("operator CPU, burst start -> last Job", cpu_after - cpu_before, "s"),
    ]
    if before:
        served = after["emulator_requests"] - before["emulator_requests"]
        service = after["emulator_service_seconds"] - before["emulator_service_seconds"]
        figures += [
            Figure("emulator CPU, burst start -> last Job",
                   after["emulator_cpu_seconds"] - before["emulator_cpu_seconds"], "s"),
            Figure("emulator requests in the burst", served),
            Figure("emulator mean service time per request", 1000 * service / max(1.0, served), "ms"),
            Figure("emulator request log at the end", scale_stats["emulator_request_log"], "requests"),
        ]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="TuningJobs applied at once (default 200)")
    parser.add_argument("--total", type=int, default=1000, help="TuningJobs at the end (default 1,000)")
    parser.add_argument("--kubeconfig", type=Path, help="a real cluster (with the CRDs installed) instead of kmock")
    parser.add_argument("--namespace", default="kubetune-bench", help="namespace on a real cluster")
    parser.add_argument("--settle", type=float, default=2 * STATUS_REFRESH_SECONDS + 5,
                        help="seconds to wait at the full count before the last memory reading (35)")
    parser.add_argument("--keep-request-log", action="store_true",
                        help="let kmock keep every request it served (its matching then slows down quadratically)")
    parser.add_argument("--profile-operator", type=Path, metavar="FILE",
                        help="run the operator under cProfile and write its stats to FILE")
    parser.add_argument("--tiny", action="store_true", help="a smoke run: 5 at once, 10 in all, 2 s settle")
    args = parser.parse_args()
    jobs, total = (5, 10) if args.tiny else (args.jobs, max(args.total, args.jobs + 1))
    settle = 2.0 if args.tiny else args.settle
    print("control plane: the operator turning TuningJobs into Jobs")
    print(machine_line())
    print(package_versions("kopf", "kubernetes", "kmock"))
    print(f"API: {args.kubeconfig or 'kmock emulator on loopback (same machine)'}"
          + ("" if args.kubeconfig or args.keep_request_log else ", answered requests dropped from its log"))
    with tempfile.TemporaryDirectory(prefix="bench-control-plane-") as tmp:
        folder = Path(tmp)
        if args.kubeconfig:
            cluster = ClusterApi(args.kubeconfig, args.namespace)
            try:
                figures = measure(cluster, jobs, total, args.namespace, folder, settle, args.profile_operator)
            finally:
                cluster.clean_up()
        else:
            with emulated_api(folder, keep_request_log=args.keep_request_log) as api:
                figures = measure(api, jobs, total, "default", folder, settle, args.profile_operator)
    print_table(f"control plane, {jobs} at once, {total} in all", figures)


if __name__ == "__main__":
    main()
