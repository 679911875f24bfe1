"""Shared parts of the benchmarks: workers in their own processes, alternating runs, medians, tables.

Every measured run happens in a fresh child process (`python -m bench.<name> --worker ...`),
so one run's caches, thread pools and heap cannot help or hurt the next, and the child's peak
RSS is its own. The sides of a comparison alternate in an ABBA order (A B, then B A, ...):
on a shared, noisy machine a slow minute then hits both sides alike. Figures are medians.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULT_PREFIX = "BENCH_RESULT "
REPO_ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mb() -> float:
    """This process's peak resident memory, in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def process_rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of another process, in MiB, from /proc."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = float(value.split()[0]) / 1024
    return fields.get("VmRSS", math.nan), fields.get("VmHWM", math.nan)


def emit_result(result: dict[str, Any]) -> None:
    """A worker's answer to its parent: one prefixed JSON line on stdout."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(REPO_ROOT), str(REPO_ROOT / "operator"), str(REPO_ROOT / "trainer-image")]
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("TOKENIZERS_PARALLELISM", "true")
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    env.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    env.setdefault("PYTHONWARNINGS", "ignore")
    env.update(extra)
    return env


def run_worker(module: str, args: Sequence[str], *, timeout: float = 3600, env: dict[str, str] | None = None
               ) -> dict[str, Any]:
    """Run `python -m module --worker args...` and return the JSON it emitted; its stderr on failure."""
    command = [sys.executable, "-m", module, "--worker", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env or child_env(),
                          cwd=REPO_ROOT, check=False)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return dict(json.loads(line[len(RESULT_PREFIX):]))
    raise RuntimeError(f"worker {' '.join(command)} exited {done.returncode} without a result:\n"
                       f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}")


def alternate(sides: dict[str, Callable[[int], dict[str, Any]]], repeats: int,
              log: Callable[[str], None] = print) -> dict[str, list[dict[str, Any]]]:
    """Run every side `repeats` times, alternating in ABBA order; results per side, in run order."""
    names = list(sides)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else reversed(names):
            result = sides[name](repeat)
            results[name].append(result)
            log(f"  run {repeat + 1}/{repeats} {name}: " + ", ".join(
                f"{k}={_short(v)}" for k, v in result.items() if isinstance(v, int | float)))
    return results


def _short(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def median_of(results: Sequence[dict[str, Any]], key: str) -> float:
    return float(statistics.median(float(r[key]) for r in results))


@dataclass
class Figure:
    """One line of a result table; `goal` is a (comparison, bound) pair such as (">=", 3.0)."""

    name: str
    value: float
    unit: str = ""
    goal: tuple[str, float] | None = None

    @property
    def met(self) -> bool | None:
        if self.goal is None:
            return None
        op, bound = self.goal
        return self.value >= bound if op == ">=" else self.value <= bound


def _number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) >= 100:
        return f"{int(value):,}"
    return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.1f}"


def print_table(title: str, figures: Sequence[Figure]) -> None:
    """A fixed-width table: figure | value unit | goal | met. Tests parse the value column."""
    width = max(len(f.name) for f in figures)
    print(f"\n{title}")
    print(f"{'figure'.ljust(width)} | {'value':>22} | {'goal':>12} | met")
    print(f"{'-' * width}-+-{'-' * 22}-+-{'-' * 12}-+----")
    for figure in figures:
        value = f"{_number(figure.value)} {figure.unit}".rstrip()
        goal = f"{figure.goal[0]} {_number(figure.goal[1])} {figure.unit}".rstrip() if figure.goal else ""
        met = {None: "", True: "yes", False: "NO"}[figure.met]
        print(f"{figure.name.ljust(width)} | {value:>22} | {goal:>12} | {met}")
    sys.stdout.flush()


def machine_line() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"machine: {platform.machine()}, {cores} cores, {memory_gib:.0f} GiB, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def package_versions(*names: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in names:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (missing)")
    return ", ".join(found)
