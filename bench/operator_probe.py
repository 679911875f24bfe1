"""The operator with its handler thread pool timed: `python -m bench.operator_probe OUT.json`.

Runs `kubetune operator` unchanged. kopf runs every sync handler through
`loop.run_in_executor(settings.execution.executor, partial(context.run, partial(handler, **kwargs)))`;
the probe wraps `ThreadPoolExecutor.submit` to record, for each handler call, the handler, the
object's kind and name, the watch event type, when kopf submitted it, when a worker thread
started it, when it ended (time.monotonic, which is system-wide on Linux, so comparable with
the benchmark's own stamps) and the CPU time its thread spent. The calls are appended to
OUT.json (one JSON array per line) every half second and at exit, so they are there even if
the operator has to be killed. Measurement only: what the operator does is not changed,
unless an experiment is asked for: BENCH_HANDLER_THREADS=N sets kopf's handler thread pool
to N threads (kopf's default is Python's: min(32, cores + 4), 6 here).

`summarize(calls)` turns them into the figures the control-plane benchmark prints.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

# (handler, kind, name, event type, submitted, started, ended, thread CPU seconds)
Call = tuple[str, str, str, str, float, float, float, float]
_CALLS: list[Call] = []


def _handler_of(fn: Any) -> tuple[str, str, str, str] | None:
    """kopf's partial(context.run, partial(handler, **kwargs)): the handler and its object, else None.

    Only plain values are read (kopf's body views cost a lookup chain per key)."""
    if type(fn) is not functools.partial or not fn.args or type(fn.args[0]) is not functools.partial:
        return None
    inner = fn.args[0]
    resource = inner.keywords.get("resource")
    return (getattr(inner.func, "__name__", "?"), str(getattr(resource, "kind", "") or ""),
            str(inner.keywords.get("name") or ""), str(inner.keywords.get("type") or ""))


def install() -> None:
    original = ThreadPoolExecutor.submit

    def submit(self: ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        handler = _handler_of(fn)
        if handler is None:
            return original(self, fn, *args, **kwargs)
        submitted = time.monotonic()

        def timed(*a: Any, **k: Any) -> Any:
            started, cpu = time.monotonic(), time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                _CALLS.append((*handler, submitted, started, time.monotonic(), time.thread_time() - cpu))

        return original(self, timed, *args, **kwargs)

    ThreadPoolExecutor.submit = submit  # type: ignore[method-assign,assignment]


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.4999) - 1))]


def load(path: Path) -> list[Call]:
    if not path.exists():
        return []
    return [tuple(json.loads(line)) for line in path.read_text().splitlines() if line]


def summarize(calls: list[Call], since: float, until: float) -> dict[str, dict[str, float]]:
    """Per handler (and `new TuningJob`: the ADDED events of TuningJobs), for calls submitted in
    [since, until]: count, queue wait p50/p99/max (submitted -> started), run p50/p99 (wall), CPU mean."""
    groups: dict[str, list[Call]] = {}
    for call in calls:
        if since <= call[4] <= until:
            groups.setdefault(call[0], []).append(call)
            if call[0] == "tuningjob_event" and call[3] == "ADDED":
                groups.setdefault("new TuningJob", []).append(call)
    out: dict[str, dict[str, float]] = {}
    for handler, group in sorted(groups.items()):
        waits = [c[5] - c[4] for c in group]
        runs = [c[6] - c[5] for c in group]
        out[handler] = {"count": len(group), "wait_p50": _percentile(waits, 0.5), "wait_p99": _percentile(waits, 0.99),
                        "wait_max": max(waits), "run_p50": _percentile(runs, 0.5), "run_p99": _percentile(runs, 0.99),
                        "cpu_mean": statistics.fmean(c[7] for c in group), "busy": sum(runs)}
    return out


def _experiment_pool_size(threads: int) -> None:
    from kubetune.handlers import startup

    configure = startup.configure_kopf

    def configure_with_pool(settings: Any) -> None:
        configure(settings)
        settings.execution.max_workers = threads

    startup.configure_kopf = configure_with_pool


def main() -> None:
    out = Path(sys.argv[1])
    install()
    if os.environ.get("BENCH_HANDLER_THREADS"):
        _experiment_pool_size(int(os.environ["BENCH_HANDLER_THREADS"]))
    written = 0
    guard = threading.Lock()

    def dump() -> None:
        nonlocal written
        with guard:
            calls = _CALLS[written:]
            written += len(calls)
            if calls:
                with out.open("a") as file:
                    file.writelines(json.dumps(call) + "\n" for call in calls)

    def dump_often() -> None:
        while True:
            time.sleep(0.5)
            dump()

    threading.Thread(target=dump_often, name="probe-dump", daemon=True).start()
    atexit.register(dump)
    from kubetune.cli import main as kubetune_main

    sys.exit(kubetune_main(["operator"]))


if __name__ == "__main__":
    main()
