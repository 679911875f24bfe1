"""Control plane: how fast the operator turns applied TuningJobs into Jobs, and what memory it holds.

The operator runs as `python -m kubetune operator` in its own process (so its RSS is its own;
under bench.operator_probe, which times its handler thread pool), with its shipped default
settings, against kmock's Kubernetes emulator on loopback (the rig of the wiring tests,
tests/support/kube_emulator.py) or against a real cluster (`--kubeconfig`).

On the emulator the cluster's own components run by default, in a process of their own, as a
real control plane's do (tests/support/cluster_agents.py): the Job controller creates each
Job's Pod and writes the Job's status, a scheduler binds the Pods and a kubelet starts them,
each a client with its real rate limit, posting the Events a real one posts. The operator then
sees a real cluster's watch events, not only its own objects'. `--traffic jobs` runs the Job
controller alone (a control plane without nodes); `--traffic none` none of it.

1. one warm-up TuningJob (the operator's watches are up once its Job exists);
2. a burst: `--jobs` TuningJobs POSTed at once; latency = TuningJob accepted by the API ->
   its training Job accepted by the API; p50/p99; then, with traffic, until every run of the
   burst has started (Job ready, TuningJob Running): what each TuningJob cost in watch events
   and requests, reconcile passes, and the CPU of each process;
3. more bursts up to `--total` resources (latency of the last), then a settle period long
   enough for every running-run log poll (15 s) to run at least twice; RSS again.

On the emulator the same bursts also run, before and after the operator's run, each on a fresh
emulator with the same cluster traffic, against the by-hand baseline (bench.direct_controller): a
controller that only watches TuningJobs and POSTs the operator's own ConfigMap and Job for each,
pre-rendered. Its p99 is the floor of this rig (the emulator is one Python thread on 2 shared
cores); the operator's is printed against it as a ratio. On a real cluster there is no baseline
run (issue 12 measured one: 200 ConfigMap + Job pairs posted directly, p99 0.58 s).

On the emulator both moments are taken inside the API server (a hook on its create path),
so the figures carry no client-side polling delay. The emulator shares these 2 cores with the
operator and the cluster's components: the run prints the CPU each used.

    python -m bench.control_plane                      # 200 at once, then 1,000 in all
    python -m bench.control_plane --traffic none       # the operator's own objects only
    python -m bench.control_plane --jobs 50 --total 200
    python -m bench.control_plane --kubeconfig ~/.kube/config --namespace kubetune-bench
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import operator_probe
from bench.common import Figure, machine_line, package_versions, print_table, process_rss_mb
from bench.control_plane_rig import (
    Api,
    ChildProcess,
    ClusterApi,
    EmulatedApi,
    OperatorProcess,
    baseline_process,
    cluster_agents,
    cpu_seconds,
    emulated_api,
    operator_process,
)
from bench.control_plane_traffic import Window, is_operator, traffic_figures

GOAL_P99_SECONDS = 1.0
GOAL_LAST_BURST_P99_SECONDS = 2.0
GOAL_RSS_MB = 150.0
STATUS_REFRESH_SECONDS = 15  # the operator's default (KUBETUNE_STATUS_REFRESH_SECONDS)
START_UP_TIMEOUT = 600.0


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
            # Measured: the operator's path to the training Job. With the preflight (the default) a run's
            # first child is the preflight Job instead, and the training Job waits for its Pod's report.
            "guardrails": {"preflight": False},
        },
    }


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (p99 of 200 values is the 198th smallest)."""
    ordered = sorted(values)
    rank = max(1, round(share * len(ordered) + 0.4999))
    return ordered[min(rank, len(ordered)) - 1]


def wait_until(what: str, done: Callable[[], bool], timeout: float,
               operator: ChildProcess) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        operator.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}:\n"
                               f"{operator.log.read_text()[-3000:]}")
        time.sleep(0.02)


def burst(api: Api, names: list[str], namespace: str, operator: ChildProcess) -> list[float]:
    """Create the TuningJobs at once; the apply -> Job latencies (seconds), once every Job exists."""
    api.create_tuningjobs([tuningjob(name, namespace) for name in names])
    wait_until(f"{len(names)} Jobs", lambda: all(n in api.job_times() for n in names), 60 + 0.5 * len(names),
               operator)
    applied, created = api.tuningjob_times(), api.job_times()
    return [created[n] - applied[n] for n in names]


class Readings:
    """Moments of the run: every process's counters at once."""

    def __init__(self, api: Api, operator: OperatorProcess, agents_pid: int | None) -> None:
        self.api, self.operator, self.agents_pid = api, operator, agents_pid

    def take(self) -> Window:
        return Window(at=time.monotonic(), api=self.api.reading(), operator=self.operator.reading(),
                      agents_cpu=cpu_seconds(self.agents_pid) if self.agents_pid else None)


def wait_started(api: Api, names: list[str], full: bool, operator: OperatorProcess) -> None:
    """Until every run has started (cluster and operator), then the operator quiet for a second."""
    wait_until(f"{len(names)} runs started", lambda: api.runs_started(names, full) == len(names),
               START_UP_TIMEOUT, operator)
    quiet_since, seen = time.monotonic(), api.reading()
    while seen is not None and time.monotonic() - quiet_since < 1.0:
        time.sleep(0.25)
        now = api.reading()
        assert now is not None
        if any(is_operator(agent) and not path.endswith("/log") for _, path, _, agent in api.requests(seen, now)):
            quiet_since = time.monotonic()
        seen = now


@contextmanager
def cluster_side(api: Api, traffic: str, folder: Path, rate_limits: bool) -> Iterator[int | None]:
    """The cluster's components for the emulator (their process id), or nothing."""
    url = getattr(getattr(api, "cluster", None), "url", None)
    if traffic == "none" or url is None:
        yield None
        return
    with cluster_agents(url, traffic, folder, rate_limits=rate_limits) as agents:
        yield agents.pid


def burst_names(jobs: int, total: int) -> list[list[str]]:
    """The TuningJobs of each burst: one warm-up, `jobs` at once, then bursts of `jobs` up to `total` in all."""
    bursts, created = [["warmup"], [f"burst-{i:04d}" for i in range(jobs)]], jobs + 1
    while created < total:
        chunk = min(jobs, total - created)
        bursts.append([f"scale-{created + i:05d}" for i in range(chunk)])
        created += chunk
    return bursts


@dataclass
class Baseline:
    first: list[float]  # apply -> Job latencies of the burst of `jobs` at once
    last: list[float]  # of the last burst


def measure_baseline(api: EmulatedApi, jobs: int, total: int, namespace: str, folder: Path, *,
                     traffic: str, rate_limits: bool) -> Baseline:
    """The same bursts on a rig of their own, answered by the by-hand baseline instead of the operator."""
    bursts = burst_names(jobs, total)
    every = [name for names in bursts for name in names]
    with ExitStack() as stack:
        stack.enter_context(cluster_side(api, traffic, folder, rate_limits))
        controller = stack.enter_context(baseline_process(api.cluster.url, namespace, every, folder))
        latencies = [burst(api, names, namespace, controller) for names in bursts]
    return Baseline(first=latencies[1], last=latencies[-1])


def baseline_figures(operator: list[Figure], baselines: list[Baseline], jobs: int, created: int) -> list[Figure]:
    """The baselines' p99s (one run before the operator's, one after) and the operator's against their mean."""
    figures: list[Figure] = []
    p99 = {figure.name: figure.value for figure in operator}
    for label, last in ((f"{jobs} at once", False), (f"last burst, {created} resources", True)):
        mine = p99[f"apply -> Job p99 ({label})"]
        runs = [percentile(baseline.last if last else baseline.first, 0.99) for baseline in baselines]
        for when, value in zip(("before", "after"), runs, strict=True):
            figures.append(Figure(f"by-hand baseline apply -> Job p99 ({label}), run {when}", value, "s"))
        figures.append(Figure(f"operator / by-hand baseline, p99 ({label})", mine / statistics.mean(runs), "x"))
    return figures


def measure(api: Api, jobs: int, total: int, namespace: str, folder: Path, settle: float, *,
            traffic: str, rate_limits: bool, profile: Path | None = None) -> list[Figure]:
    full = traffic == "full"
    with ExitStack() as stack:
        agents_pid = stack.enter_context(cluster_side(api, traffic, folder, rate_limits))
        operator = stack.enter_context(operator_process(api.kubeconfig, folder, profile))
        readings = Readings(api, operator, agents_pid)
        started = time.monotonic()
        warmup, names, *more = burst_names(jobs, total)
        burst(api, warmup, namespace, operator)
        if agents_pid:
            wait_started(api, warmup, full, operator)
        print(f"operator up and creating Jobs after {time.monotonic() - started:.1f}s "
              f"(process start, imports, login, watches)")
        idle = readings.take()
        latencies = burst(api, names, namespace, operator)
        burst_end = readings.take()
        print(f"burst of {jobs}: every Job created {burst_end.at - idle.at:.2f}s after the first POST")
        start_up = None
        if agents_pid:
            wait_started(api, names, full, operator)
            start_up = readings.take()
            print(f"every run of the burst started {start_up.at - idle.at:.1f}s after the first POST")
        last: list[float] = latencies
        for scale in more:
            last = burst(api, scale, namespace, operator)
        created = total  # burst_names made exactly that many
        print(f"{created} TuningJobs exist; settling {settle}s (two refresh intervals)")
        settling = readings.take()
        time.sleep(settle)
        end = readings.take()
        scale_rss, scale_peak = process_rss_mb(operator.pid)
    calls = operator_probe.load(operator.probe)
    figures = [
        Figure(f"apply -> Job p50 ({jobs} at once)", percentile(latencies, 0.50), "s"),
        Figure(f"apply -> Job p99 ({jobs} at once)", percentile(latencies, 0.99), "s", ("<=", GOAL_P99_SECONDS)),
        Figure(f"apply -> Job max ({jobs} at once)", max(latencies), "s"),
        Figure("Jobs created per second in the burst", jobs / (burst_end.at - idle.at), "/s"),
        Figure(f"apply -> Job p50 (last burst, {created} resources)", percentile(last, 0.50), "s"),
        Figure(f"apply -> Job p99 (last burst, {created} resources)", percentile(last, 0.99), "s",
               ("<=", GOAL_LAST_BURST_P99_SECONDS)),
        Figure("operator RSS idle (1 TuningJob)", idle.operator.rss, "MiB"),
        Figure(f"operator RSS after the burst ({jobs + 1})", burst_end.operator.rss, "MiB"),
        Figure(f"operator RSS at {created} TuningJobs", scale_rss, "MiB", ("<=", GOAL_RSS_MB)),
        Figure(f"operator peak RSS (up to {created})", scale_peak, "MiB"),
    ]
    figures += traffic_figures(idle, burst_end, start_up, settling, end, api, jobs, names, calls)
    return figures


def run_baseline(folder: Path, jobs: int, total: int, args: argparse.Namespace) -> Baseline:
    folder.mkdir()
    with emulated_api(folder, keep_request_log=args.keep_request_log) as api:
        baseline = measure_baseline(api, jobs, total, "default", folder, traffic=args.traffic,
                                    rate_limits=not args.no_rate_limits)
    print(f"by-hand baseline: apply -> Job p99 {percentile(baseline.first, 0.99):.3f}s ({jobs} at once), "
          f"{percentile(baseline.last, 0.99):.3f}s (last burst)")
    return baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="TuningJobs applied at once (default 200)")
    parser.add_argument("--total", type=int, default=1000, help="TuningJobs at the end (default 1,000)")
    parser.add_argument("--traffic", choices=("full", "jobs", "none"), default="full",
                        help="the emulated cluster's own components: Job controller, scheduler and kubelet (full, "
                             "the default), the Job controller alone (jobs), or none")
    parser.add_argument("--no-rate-limits", action="store_true",
                        help="the cluster's components send without their client-side rate limits (QPS/burst)")
    parser.add_argument("--kubeconfig", type=Path, help="a real cluster (with the CRDs installed) instead of kmock")
    parser.add_argument("--namespace", default="kubetune-bench", help="namespace on a real cluster")
    parser.add_argument("--settle", type=float, default=2 * STATUS_REFRESH_SECONDS + 5,
                        help="seconds to wait at the full count before the last memory reading (35)")
    parser.add_argument("--keep-request-log", action="store_true",
                        help="let kmock keep every request it served (its matching then slows down quadratically)")
    parser.add_argument("--profile-operator", type=Path, metavar="FILE",
                        help="run the operator under cProfile and write its stats to FILE")
    parser.add_argument("--experiment-handler-threads", type=int, metavar="N",
                        help="an experiment, not the shipped operator: kopf's handler thread pool at N threads")
    parser.add_argument("--tiny", action="store_true", help="a smoke run: 5 at once, 10 in all, 2 s settle")
    args = parser.parse_args()
    jobs, total = (5, 10) if args.tiny else (args.jobs, max(args.total, args.jobs + 1))
    settle = 2.0 if args.tiny else args.settle
    traffic = "none" if args.kubeconfig else args.traffic
    if args.experiment_handler_threads:
        os.environ["BENCH_HANDLER_THREADS"] = str(args.experiment_handler_threads)
        print(f"EXPERIMENT: kopf's handler thread pool at {args.experiment_handler_threads} threads")
    print("control plane: the operator turning TuningJobs into Jobs")
    print(machine_line())
    print(package_versions("kopf", "kubernetes", "kmock"))
    print(f"API: {args.kubeconfig or 'kmock emulator on loopback (same machine)'}"
          + ("" if args.kubeconfig or args.keep_request_log else ", answered requests dropped from its log"))
    print(f"cluster traffic: {traffic}" + ("" if traffic == "none" else
                                             ", without rate limits" if args.no_rate_limits else
                                             ", components at their default QPS/burst (controller-manager 20/30, "
                                             "scheduler and kubelet 50/100)"))
    with tempfile.TemporaryDirectory(prefix="bench-control-plane-") as tmp:
        folder = Path(tmp)
        options: dict[str, Any] = {"traffic": traffic, "rate_limits": not args.no_rate_limits,
                                   "profile": args.profile_operator}
        if args.kubeconfig:
            cluster = ClusterApi(args.kubeconfig, args.namespace)
            try:
                figures = measure(cluster, jobs, total, args.namespace, folder, settle, **options)
            finally:
                cluster.clean_up()
        else:
            # The baseline before and after the operator, each on a fresh emulator: a drift of the
            # machine between the two shows as their difference.
            baselines = [run_baseline(folder / "baseline-before", jobs, total, args)]
            with emulated_api(folder, keep_request_log=args.keep_request_log) as api:
                figures = measure(api, jobs, total, "default", folder, settle, **options)
            baselines.append(run_baseline(folder / "baseline-after", jobs, total, args))
            figures += baseline_figures(figures, baselines, jobs, total)
    print_table(f"control plane, {jobs} at once, {total} in all, cluster traffic: {traffic}", figures)


if __name__ == "__main__":
    main()
