"""Scaling efficiency of distributed training: N devices against one, through the real trainer.

Both sides run `kubetune-trainer train --config` on the same rows, model and per-device
batch, for the same number of steps: one process, then N processes (torchrun, DDP or FSDP
as the strategy says). N processes with the same per-device batch see N times the rows per
step, so ideal scaling is N times the tokens per second of one device:

    efficiency = tokens/s with N devices / (N x tokens/s with one device)

Tokens/s = result.metrics.trainedTokens / runtimeSeconds (non-padding tokens of all ranks,
over the Trainer's own train() wall time: data preparation and evaluation are outside).

Where GPUs are visible, N = their count (at least 2). On a machine without GPUs the benchmark
says so and measures nothing, unless --cpu N asks for N gloo processes on the CPU (a smoke
run of the same path; CPU cores are shared, so the ratio there says little about GPUs).

    python -m bench.scaling                      # every visible GPU against one
    python -m bench.scaling --method Full --strategy FSDP --steps 40
    python -m bench.scaling --cpu 2 --tiny       # the code path, on CPU
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.alpaca_like import alpaca_rows
from bench.common import (
    REPO_ROOT,
    Figure,
    alternate,
    child_env,
    machine_line,
    median_of,
    package_versions,
    print_table,
)
from kubetune.api.contract import TrainerConfig

# A model large enough for a GPU to have work per step (~110M parameters), still quick to build.
GPU_MODEL: dict[str, Any] = {"hiddenSize": 768, "intermediateSize": 2048, "numLayers": 12, "numHeads": 12,
                             "numKeyValueHeads": 4, "vocabSize": 8192}
TINY_MODEL: dict[str, Any] = {"hiddenSize": 64, "intermediateSize": 128, "numLayers": 2, "numHeads": 4,
                              "numKeyValueHeads": 2, "vocabSize": 512}


def _config(folder: Path, *, processes: int, rows: int, steps: int, batch: int, method: str, strategy: str,
            tiny: bool, cuda: bool) -> Path:
    data_rows = alpaca_rows(rows, seed=7)
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data_rows), encoding="utf-8")
    config = {
        "name": "scaling", "namespace": "bench", "workDir": str(folder / "work"),
        "mounts": {"pvcs": {"data": str(data), "out": str(folder / "out")}}, "resultPath": str(folder / "result.json"),
        "launch": {"nodes": 1, "processesPerNode": processes, "runId": folder.name},
        "spec": {
            "baseModel": {"scratch": TINY_MODEL if tiny else GPU_MODEL},
            "method": {"type": method, "lora": {"r": 16, "alpha": 32, "dropout": 0.0}},
            "distributed": {"strategy": strategy},
            "datasets": {"train": [{"source": {"pvc": {"claimName": "data", "path": "train.jsonl"}},
                                    "format": "alpaca"}]},
            "hyperparameters": {"maxSteps": steps, "perDeviceBatchSize": batch, "loggingSteps": max(1, steps // 4),
                                "saveSteps": 1_000_000, "maxSeqLength": 128 if tiny else 1024,
                                "precision": "bf16" if cuda else "fp32", "learningRate": 1e-4},
            "output": {"pvc": {"claimName": "out", "path": "model"}},
            "resources": {"gpus": processes if cuda else 0},
        },
    }
    path = folder / "config.json"
    # Through the model, as the operator writes it (contractVersion and defaults included).
    path.write_text(json.dumps(TrainerConfig.model_validate(config).to_wire()), encoding="utf-8")
    return path


def _measure(processes: int, devices: int, args: argparse.Namespace, cuda: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="kubetune-scaling-") as tmp:
        folder = Path(tmp)
        # One data set for both sides: as many rows as the larger world trains on.
        path = _config(folder, processes=processes, rows=max(256, args.steps * args.batch * devices),
                       steps=args.steps, batch=args.batch, method=args.method, strategy=args.strategy,
                       tiny=args.tiny, cuda=cuda)
        done = subprocess.run([sys.executable, "-m", "kubetune_trainer.cli", "train", "--config", str(path)],
                              capture_output=True, text=True, cwd=REPO_ROOT, env=child_env(), timeout=7200,
                              check=False)
        result_file = folder / "result.json"
        result = json.loads(result_file.read_text()) if result_file.exists() else {}
        if done.returncode != 0 or result.get("status") != "Succeeded":
            raise RuntimeError(f"{processes} process(es) failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                               f"{done.stderr[-3000:]}")
        metrics = result["metrics"]
        return {"tokens_per_second": metrics["trainedTokens"] / metrics["runtimeSeconds"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", type=int, default=0, metavar="N", help="N gloo processes on CPU (no GPUs needed)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8, help="per-device batch")
    parser.add_argument("--method", default="LoRA", choices=["LoRA", "Full"])
    parser.add_argument("--strategy", default="Auto", choices=["Auto", "DDP", "FSDP"])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--tiny", action="store_true", help="a tiny model and few steps (a smoke run)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.steps = min(args.steps, 6)

    import torch

    gpus = torch.cuda.device_count()
    cuda = gpus >= 2 and not args.cpu
    devices = gpus if cuda else args.cpu
    print(machine_line())
    print(package_versions("torch", "transformers", "accelerate", "peft"))
    if devices < 2:
        print(f"scaling: needs at least 2 GPUs ({gpus} visible) or --cpu N with N >= 2; nothing measured")
        return 0
    where = f"{devices} GPUs ({torch.cuda.get_device_name(0)})" if cuda else f"{devices} CPU processes (gloo)"
    print(f"scaling: {args.method}, strategy {args.strategy}, {args.steps} steps, per-device batch {args.batch}, "
          f"{where}")
    runs = alternate({"1 device": lambda _: _measure(1, devices, args, cuda),
                      f"{devices} devices": lambda _: _measure(devices, devices, args, cuda)}, args.repeats)
    one = median_of(runs["1 device"], "tokens_per_second")
    many = median_of(runs[f"{devices} devices"], "tokens_per_second")
    print_table("Scaling (median of runs)", [
        Figure("tokens/s, 1 device", one, "tok/s"),
        Figure(f"tokens/s, {devices} devices", many, "tok/s"),
        Figure("speed-up", many / one, "x"),
        Figure("scaling efficiency (speed-up / devices)", many / one / devices, "", (">=", 0.8) if cuda else None),
    ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
