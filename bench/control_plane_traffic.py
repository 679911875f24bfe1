"""What a burst of TuningJobs cost, read from the emulator's records, the operator and its probe.

Per TuningJob of the burst: the watch events the API server sent the operator (by kind and
type), the operator's requests (by verb and resource), the cluster components' requests,
reconcile passes; the CPU each process used; and where each TuningJob's apply -> Job time
went (kopf delivering the event and queueing the handler; the wait for a handler thread; the
pass until its Job POST), from the probe in the operator process.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

from bench import operator_probe
from bench.common import Figure
from bench.control_plane_rig import Api, ApiReading, OperatorReading

KUBECTL_AGENT = "kubectl/"
COMPONENTS = {"kube-controller-manager/": "Job controller", "kube-scheduler/": "scheduler", "kubelet/": "kubelet"}


@dataclass
class Window:
    """Every process's counters at one moment (`api` is None on a real cluster)."""

    at: float
    api: ApiReading | None
    operator: OperatorReading
    agents_cpu: float | None


def verb(method: str, path: str, params: dict[str, str]) -> str:
    """`get jobs`, `list pods`, `patch tuningjobs/status`, `create events`, `get pods/log` ..."""
    parts = path.strip("/").split("/")
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    if rest[:1] == ["namespaces"]:
        rest = rest[2:]
    resource = "/".join([rest[0], *rest[2:]]) if rest else path
    named = len(rest) >= 2
    if method == "GET":
        action = "watch" if params.get("watch") == "true" else "get" if named else "list"
    else:
        action = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}.get(method, method)
    return f"{action} {resource}"


def _who(agent: str) -> str:
    for prefix, name in COMPONENTS.items():
        if agent.startswith(prefix):
            return name
    if agent.startswith(KUBECTL_AGENT) or agent.startswith("kmock/"):
        return "client"
    return "operator"


def is_operator(agent: str) -> bool:
    return _who(agent) == "operator"


def _operator_events(since: ApiReading, until: ApiReading) -> collections.Counter[tuple[str, str]]:
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    for (agent, kind, type_), n in (until.delivered - since.delivered).items():
        if _who(agent) == "operator":
            counts[(kind, type_)] += n
    return counts


def _per_tuningjob(since: Window, until: Window, api: Api, jobs: int, label: str) -> list[Figure]:
    assert since.api is not None and until.api is not None
    figures: list[Figure] = []
    events = _operator_events(since.api, until.api)
    kinds: collections.Counter[str] = collections.Counter()
    for (kind, _), n in events.items():
        kinds[kind] += n
    print(f"\nwatch events sent to the operator per TuningJob ({label}):")
    for (kind, type_), n in sorted(events.items()):
        print(f"  {kind:<10} {type_:<9} {n / jobs:6.2f}")
    for kind in ("TuningJob", "Job", "Pod"):
        figures.append(Figure(f"watch events to the operator per TuningJob, {kind} ({label})", kinds[kind] / jobs))
    total_events = sum(kinds.values())
    figures.append(Figure(f"watch events to the operator per TuningJob ({label})", total_events / jobs))

    requests = api.requests(since.api, until.api)
    by_verb: collections.Counter[str] = collections.Counter()
    by_component: collections.Counter[str] = collections.Counter()
    for method, path, params, agent in requests:
        who = _who(agent)
        if who == "operator":
            by_verb[verb(method, path, params)] += 1
        elif who != "client":
            by_component[who] += 1
    print(f"operator requests per TuningJob ({label}):")
    for name, n in by_verb.most_common():
        print(f"  {name:<28} {n / jobs:6.2f}")
    actions: collections.Counter[str] = collections.Counter()
    for name, n in by_verb.items():
        actions[name.split()[0] + (" log" if name.endswith("/log") else "")] += n
    for action in ("get", "list", "get log", "create", "patch"):
        figures.append(Figure(f"operator requests per TuningJob, {action} ({label})", actions[action] / jobs))
    operator_requests = sum(by_verb.values())
    figures.append(Figure(f"operator requests per TuningJob ({label})", operator_requests / jobs))
    for component in COMPONENTS.values():
        if by_component[component]:
            figures.append(Figure(f"{component} requests per TuningJob ({label})", by_component[component] / jobs))

    passes = until.operator.passes - since.operator.passes
    figures += [
        Figure(f"reconcile passes per TuningJob ({label})", passes / jobs),
        Figure(f"operator requests per pass ({label})", operator_requests / max(1.0, passes)),
        Figure(f"mean pass, wall ({label})", 1000 * (until.operator.pass_seconds - since.operator.pass_seconds)
               / max(1.0, passes), "ms"),
        Figure(f"main thread (kopf's loop) CPU per watch event ({label})",
               1000 * (until.operator.loop_cpu - since.operator.loop_cpu) / max(1, total_events), "ms"),
        Figure(f"other threads (watches, workers) CPU per pass ({label})",
               1000 * ((until.operator.cpu - until.operator.loop_cpu) - (since.operator.cpu - since.operator.loop_cpu))
               / max(1.0, passes), "ms"),
    ]
    return figures


def _cpu(since: Window, until: Window, label: str) -> list[Figure]:
    figures = [Figure(f"operator CPU ({label})", until.operator.cpu - since.operator.cpu, "s"),
               Figure(f"operator CPU in its main thread, kopf's loop ({label})",
                      until.operator.loop_cpu - since.operator.loop_cpu, "s")]
    if since.api is not None and until.api is not None:
        figures.append(Figure(f"emulator CPU ({label})", until.api.cpu - since.api.cpu, "s"))
    if since.agents_cpu is not None and until.agents_cpu is not None:
        figures.append(Figure(f"cluster components' CPU ({label})", until.agents_cpu - since.agents_cpu, "s"))
    return figures


def _where_time_went(api: Api, names: list[str], calls: list[operator_probe.Call]) -> list[Figure]:
    applied, created = api.tuningjob_times(), api.job_times()
    first: dict[str, operator_probe.Call] = {}
    for call in calls:
        if call[0] == "tuningjob_event" and call[2] in applied and call[2] not in first:
            first[call[2]] = call
    queued, waited, passed = [], [], []
    for name in names:
        if name not in first or name not in created:
            continue
        _, _, _, _, submitted, started, _, _ = first[name]
        queued.append(submitted - applied[name])
        waited.append(started - submitted)
        passed.append(created[name] - started)
    if not queued:
        return []
    figures = []
    for what, values in (("apply -> handler queued (watch, kopf)", queued),
                         ("handler queued -> thread starts", waited), ("thread starts -> Job created", passed)):
        ordered = sorted(values)
        figures += [Figure(f"{what} p50", ordered[len(ordered) // 2], "s"),
                    Figure(f"{what} p99", ordered[min(len(ordered) - 1, round(0.99 * len(ordered) + 0.4999) - 1)],
                           "s")]
    return figures


def _handler_calls(calls: list[operator_probe.Call], since: Window, until: Window, jobs: int, label: str
                   ) -> list[Figure]:
    summary = operator_probe.summarize(calls, since.at, until.at)
    if not summary:
        return []
    print(f"handler calls ({label}): count per TuningJob, wait for a thread p50/p99, run p50/p99, CPU mean")
    for handler, s in summary.items():
        ms = {key: 1000 * value for key, value in s.items()}
        print(f"  {handler:<22} {s['count'] / jobs:6.2f}  wait {ms['wait_p50']:7.1f} / {ms['wait_p99']:7.1f} ms"
              f"  run {ms['run_p50']:6.1f} / {ms['run_p99']:6.1f} ms  cpu {ms['cpu_mean']:5.1f} ms")
    figures = []
    for handler in ("tuningjob_event", "tuningjob_job_event", "tuningjob_pod_event"):
        if handler in summary:
            figures.append(Figure(f"{handler} calls per TuningJob ({label})", summary[handler]["count"] / jobs))
    if "new TuningJob" in summary:
        figures += [Figure(f"new TuningJob: wait for a handler thread p50 ({label})",
                           summary["new TuningJob"]["wait_p50"], "s"),
                    Figure(f"new TuningJob: wait for a handler thread p99 ({label})",
                           summary["new TuningJob"]["wait_p99"], "s")]
    return figures


def _settling(since: Window, until: Window, api: Api) -> list[Figure]:
    """What the operator keeps doing with every TuningJob in place: its refreshes (log polls)."""
    if since.api is None or until.api is None:
        return []
    requests = [(m, p) for m, p, _, agent in api.requests(since.api, until.api) if is_operator(agent)]
    seconds = max(1e-9, until.at - since.at)
    return [Figure("operator requests per second while settling", len(requests) / seconds, "/s"),
            Figure("operator Pod log reads per second while settling",
                   sum(1 for _, path in requests if path.endswith("/log")) / seconds, "/s")]


def traffic_figures(idle: Window, burst_end: Window, start_up: Window | None, settling: Window, end: Window,
                    api: Api, jobs: int, names: list[str], calls: list[Any]) -> list[Figure]:
    figures: list[Figure] = []
    figures += _cpu(idle, burst_end, "burst")
    if idle.api is not None and burst_end.api is not None:
        served = burst_end.api.served - idle.api.served
        figures += [Figure("emulator requests in the burst", served),
                    Figure("emulator mean service time per request",
                           1000 * (burst_end.api.service_seconds - idle.api.service_seconds) / max(1, served), "ms")]
        figures += _per_tuningjob(idle, burst_end, api, jobs, "burst")
    figures += _handler_calls(calls, idle, burst_end, jobs, "burst")
    figures += _where_time_went(api, names, calls)
    if start_up is not None:
        figures.append(Figure("every run of the burst started after", start_up.at - idle.at, "s"))
        figures += _cpu(idle, start_up, "start-up")
        figures += _per_tuningjob(idle, start_up, api, jobs, "start-up")
        figures += _handler_calls(calls, idle, start_up, jobs, "start-up")
    figures += _cpu(start_up or burst_end, end, "rest of the run")
    figures += _settling(settling, end, api)
    return figures
