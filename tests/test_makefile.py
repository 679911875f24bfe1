"""`make setup` installs PyTorch's CPU build, on a normal machine as on the build machines.

On Linux, PyPI's `torch==2.13.0` is the multi-GB CUDA build. `make setup` runs here with a stand-in
`python` that records each pip command and answers as pip would: on a normal machine nothing
configured offers `torch==2.13.0+cpu`; on the build machines pip's config (a local wheel) does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

FAKE_PYTHON = f"""#!{sys.executable}
import json, os, shutil, sys
args = sys.argv[1:]
if args[:2] == ["-m", "venv"]:
    os.makedirs(os.path.join(args[2], "bin"), exist_ok=True)
    shutil.copy(__file__, os.path.join(args[2], "bin", "python"))
    sys.exit(0)
assert args[:3] == ["-m", "pip", "install"], args
with open(os.environ["FAKE_PIP_LOG"], "a") as log:
    log.write(json.dumps(args[3:]) + "\\n")
cpu_build_offered = os.environ["FAKE_CPU_WHEEL_CONFIGURED"] == "1" or "--index-url" in args
if any(a.startswith("torch==") and a.endswith("+cpu") for a in args) and not cpu_build_offered:
    print("ERROR: No matching distribution found for torch==2.13.0+cpu", file=sys.stderr)
    sys.exit(1)
"""


def pip_installs(tmp_path: Path, *, cpu_wheel_configured: bool) -> list[list[str]]:
    """The arguments of every `pip install` that `make setup` ran in a fresh copy of the repository's root."""
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    log = tmp_path / "pip.log"
    env = {**os.environ, "FAKE_PIP_LOG": str(log), "FAKE_CPU_WHEEL_CONFIGURED": "1" if cpu_wheel_configured else "0"}
    run = subprocess.run(["make", "setup", f"PYTHON={fake}"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    return [json.loads(line) for line in log.read_text().splitlines()]


def torch_installs(installs: list[list[str]]) -> list[list[str]]:
    return [args for args in installs if any(a.startswith("torch") for a in args)]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_a_normal_machine_gets_torch_from_the_cpu_index(tmp_path: Path) -> None:
    installs = pip_installs(tmp_path, cpu_wheel_configured=False)
    torch = torch_installs(installs)
    # Every torch install either asks for the +cpu build or goes to the CPU index: never PyPI's CUDA build.
    assert all(any(a.endswith("+cpu") for a in args) or CPU_INDEX in args for args in torch), torch
    assert torch[-1][-2:] == ["--index-url", CPU_INDEX]
    # torch comes before the package, so the package's torch requirement is already met.
    assert installs.index(torch[-1]) < next(i for i, args in enumerate(installs) if "-e" in args)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_a_machine_whose_pip_offers_the_cpu_build_asks_no_other_index(tmp_path: Path) -> None:
    installs = pip_installs(tmp_path, cpu_wheel_configured=True)
    assert torch_installs(installs) == [["--quiet", "torch==2.13.0+cpu"]]
    assert not any("--index-url" in args for args in installs)
