"""The precision the device allows: on this CPU-only machine bf16 falls back to fp32 and the log says so."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from kubetune.api.contract import ExitCode, TrainerResult
from kubetune.api.hyperparameters import Precision
from kubetune_trainer.cli import main
from kubetune_trainer.training.device import plan_device
from support.toydata import generation_rows, write_jsonl
from support.trainer_config import data_entry, run_dir, trainer_config, write_config


def _safetensors_dtypes(path: Path) -> set[str]:
    """Tensor dtypes from a .safetensors header (8-byte length, then JSON), without loading the weights."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    return {entry["dtype"] for key, entry in header.items() if key != "__metadata__"}


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_cpu_training_falls_back_to_fp32_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        precision: str) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this test is about a machine without CUDA")
    write_jsonl(tmp_path / "data" / "train.jsonl", generation_rows("alpaca", 24))
    config = trainer_config(tmp_path, train=[data_entry("train.jsonl")],
                            hyperparameters={"maxSteps": 2, "loggingSteps": 1, "precision": precision})
    code = main(["train", "--config", str(write_config(tmp_path, config))])
    lines = capsys.readouterr().out.splitlines()
    result = TrainerResult.model_validate_json((tmp_path / "result.json").read_text())
    assert code == ExitCode.OK, result
    warnings = [line for line in lines if "warning: precision" in line]
    if precision == "bf16":
        assert warnings == ["warning: precision bf16 requested but this machine has no CUDA GPU: training in fp32"]
    else:
        assert warnings == []
    assert _safetensors_dtypes(run_dir(tmp_path) / "final" / "adapter_model.safetensors") == {"F32"}


@pytest.mark.parametrize(
    ("cuda", "bf16_capable", "requested", "used", "warns"),
    [
        (True, True, Precision.BF16, Precision.BF16, False),
        (True, False, Precision.BF16, Precision.FP16, True),
        (True, False, Precision.FP32, Precision.FP32, False),
        (True, True, Precision.FP16, Precision.FP16, False),
        (False, False, Precision.FP16, Precision.FP32, True),
    ],
)
def test_precision_plan(monkeypatch: pytest.MonkeyPatch, cuda: bool, bf16_capable: bool, requested: Precision,
                        used: Precision, warns: bool) -> None:
    import torch

    # The device is what is faked here; the decision under test is plan_device's own.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16_capable)
    plan = plan_device(requested)
    assert (plan.cuda, plan.precision, plan.warning is not None) == (cuda, used, warns)
    if warns:
        assert plan.warning is not None and requested.value in plan.warning and used.value in plan.warning
    assert plan.bf16 is (used is Precision.BF16) and plan.fp16 is (used is Precision.FP16)
