"""A small TrainerConfig for tests: a scratch model, data files on a pretend PVC, a few steps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubetune.api.contract import TrainerConfig

DATA_CLAIM = "data"
OUTPUT_CLAIM = "out"


def data_entry(file_name: str, fmt: str = "auto", weight: float = 1.0) -> dict[str, Any]:
    """A dataset entry reading <data folder>/<file_name> through a PVC source."""
    return {"source": {"pvc": {"claimName": DATA_CLAIM, "path": file_name}}, "format": fmt, "weight": weight}


def trainer_config(tmp_path: Path, train: list[dict[str, Any]], *, validation: list[dict[str, Any]] | None = None,
                   method: str = "LoRA", task: str = "textGeneration", hyperparameters: dict[str, Any] | None = None,
                   output: dict[str, Any] | None = None, classification: dict[str, Any] | None = None,
                   scratch: dict[str, Any] | None = None, objective: str = "sft", **spec_extra: Any) -> TrainerConfig:
    """Data files are looked up in tmp_path/"data" (the `data` claim); the work volume is tmp_path/"work"
    (the run works in its runs/<uid>-<runHash>/ folder) and output.pvc's `out` claim is tmp_path/"out"."""
    hp = {"maxSteps": 6, "perDeviceBatchSize": 8, "loggingSteps": 2, "saveSteps": 100, "learningRate": 3e-3,
          "maxSeqLength": 128, "warmupRatio": 0.0, "lrScheduler": "constant"}
    hp.update(hyperparameters or {})
    spec: dict[str, Any] = {
        "baseModel": {"scratch": scratch or {"vocabSize": 300}},
        "task": task,
        "method": {"type": method, "objective": objective, "lora": {"r": 8, "alpha": 16, "dropout": 0.0}},
        "datasets": {"train": train, **({"validation": validation} if validation else {})},
        "hyperparameters": hp,
        "output": output or {"pvc": {"claimName": "out", "path": "model"}},
        **spec_extra,
    }
    if classification is not None:
        spec["classification"] = classification
    return TrainerConfig.model_validate({
        "name": "test-job", "namespace": "default", "spec": spec, "workDir": str(tmp_path / "work"),
        "mounts": {"pvcs": {DATA_CLAIM: str(tmp_path / "data"), OUTPUT_CLAIM: str(tmp_path / "out")}},
        "resultPath": str(tmp_path / "result.json"),
    })


def write_config(tmp_path: Path, config: TrainerConfig) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_wire()), encoding="utf-8")
    return path


def run_dir(tmp_path: Path) -> Path:
    """The folder of the (only) run on the work volume tmp_path/"work"; a path that does not exist
    when no run has opened one (a failure before the trainer got that far)."""
    runs = sorted((tmp_path / "work" / "runs").glob("*")) if (tmp_path / "work" / "runs").is_dir() else []
    assert len(runs) <= 1, f"expected at most one run folder, found {[p.name for p in runs]}"
    return runs[0] if runs else tmp_path / "work" / "runs" / "no-run-yet"
