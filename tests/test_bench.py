"""The benchmarks run end to end at a tiny size and print their figures.

No timing assertions (these machines are shared and noisy): only that each benchmark runs,
prints its table, and that every figure in it is a finite number, the key ones positive, and
every goal row says whether it is met. The figures themselves are in docs/benchmarks.md.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def run_bench(module: str, *args: str, timeout: float = 900) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "operator"), str(REPO / "trainer-image")])
    done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=timeout, check=False)
    assert done.returncode == 0, f"{module} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def table(output: str) -> dict[str, tuple[float, str]]:
    """The result table: figure name -> (value, met column)."""
    rows: dict[str, tuple[float, str]] = {}
    lines = output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("figure ") and "| met" in line)
    for line in lines[header + 2:]:
        if " | " not in line:
            break
        name, value, goal, met = (cell.strip() for cell in line.split("|"))
        number = float(value.split()[0].replace(",", ""))
        assert math.isfinite(number), f"{name}: {value}"
        assert number >= 0, f"{name}: {value}"
        if goal:
            assert met in ("yes", "NO"), f"{name}: a goal without a verdict"
        rows[name] = (number, met)
    assert rows, output
    return rows


def test_trainer_throughput_runs_tiny() -> None:
    figures = table(run_bench("bench.trainer_throughput", "--tiny"))
    for side in ("kubetune", "trl"):
        assert figures[f"{side}: non-padding tokens/s"][0] > 0
        assert figures[f"{side}: steps"][0] == 4
        assert figures[f"{side}: loss-bearing tokens"][0] > 0
    # Both sides train one epoch over the same rows: the same tokens, the same loss-bearing tokens.
    assert figures["kubetune: non-padding tokens trained"][0] == figures["trl: non-padding tokens trained"][0]
    assert figures["kubetune: loss-bearing tokens"][0] == figures["trl: loss-bearing tokens"][0]
    assert figures["speed-up (kubetune / trl tokens/s)"][0] > 0


def test_data_prep_runs_tiny() -> None:
    figures = table(run_bench("bench.data_prep", "--tiny"))
    assert figures["kubetune: rows prepared"][0] == 300
    assert figures["kubetune: rows/s"][0] > 0 and figures["trl: rows/s"][0] > 0
    assert figures["kubetune: tokens"][0] == figures["trl: tokens"][0]
    assert figures["kubetune: loss tokens"][0] == figures["trl: loss tokens"][0] > 0
    assert figures["speed-up (trl time / kubetune time)"][0] > 0


def test_control_plane_runs_tiny() -> None:
    figures = table(run_bench("bench.control_plane", "--tiny"))
    p50, p99 = figures["apply -> Job p50 (5 at once)"][0], figures["apply -> Job p99 (5 at once)"][0]
    assert 0 < p50 <= p99
    assert figures["operator RSS at 10 TuningJobs"][0] > 0
    assert figures["emulator requests in the burst"][0] > 0
    # By default the emulated cluster's own components run: the operator sees their Pods' events.
    assert figures["watch events to the operator per TuningJob, Pod (start-up)"][0] > 0
    assert figures["Job controller requests per TuningJob (start-up)"][0] > 0
    assert figures["kubelet requests per TuningJob (start-up)"][0] > 0
    assert figures["reconcile passes per TuningJob (start-up)"][0] >= 1
    # The by-hand baseline ran the same bursts before and after, and the ratio is the operator's p99 over theirs.
    before = figures["by-hand baseline apply -> Job p99 (5 at once), run before"][0]
    after = figures["by-hand baseline apply -> Job p99 (5 at once), run after"][0]
    assert before > 0 and after > 0
    assert figures["operator / by-hand baseline, p99 (5 at once)"][0] == pytest.approx(
        p99 / ((before + after) / 2), rel=0.05)  # the table prints 3 significant digits
    assert figures["by-hand baseline apply -> Job p99 (last burst, 10 resources), run after"][0] > 0


def test_scaling_runs_tiny_on_cpu_processes() -> None:
    figures = table(run_bench("bench.scaling", "--cpu", "2", "--tiny"))
    assert figures["tokens/s, 1 device"][0] > 0 and figures["tokens/s, 2 devices"][0] > 0
    ratio = figures["tokens/s, 2 devices"][0] / figures["tokens/s, 1 device"][0]
    assert figures["speed-up"][0] == pytest.approx(ratio, rel=0.03)  # the table prints 3 significant digits
    assert figures["scaling efficiency (speed-up / devices)"][0] == pytest.approx(ratio / 2, rel=0.03)
