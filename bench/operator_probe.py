"""The operator with its handler thread pool timed: `python -m bench.operator_probe OUT.json`.

Runs `kubetune operator` unchanged. kopf runs every sync handler through
`loop.run_in_executor(settings.execution.executor, partial(context.run, partial(handler, **kwargs)))`;
the probe wraps `ThreadPoolExecutor.submit` to record, for each handler call, the handler, the
object's kind and name, the watch event type, when kopf submitted it, when a worker thread
started it, when it ended (time.monotonic, which is system-wide on Linux, so comparable with
the benchmark's own stamps) and the CPU time its thread spent. The calls are appended to
OUT.json (one JSON array per line) every half second and at exit, so they are there even if
the operator has to be killed. Measurement only: what the operator does is not changed.

`summarize(calls)` turns them into the figures the control-plane benchmark prints.
"""

from __future__ import annotations

import atexit
import functools
import json
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
    """kopf's partial(context.run, partial(handler, **kwargs)): the handler and its object, else None."""
    if not isinstance(fn, functools.partial) or not fn.args or not isinstance(fn.args[0], functools.partial):
        return None
    inner = fn.args[0]
    body = inner.keywords.get("body") or {}
    name = str(inner.keywords.get("name") or (body.get("metadata") or {}).get("name") or "")
    return (getattr(inner.func, "__name__", repr(inner.func)), str(body.get("kind") or ""), name,
            str(inner.keywords.get("type") or ""))


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


def main() -> None:
    out = Path(sys.argv[1])
    install()
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
