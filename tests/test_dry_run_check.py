"""`kubetune run --dry-run` refuses what the trainer would refuse at start, asking the trainer itself.

QLoRA needs CUDA: on a machine without it a dry run used to pass and the real run fail. The dry run
now runs `kubetune-trainer train --check`, the trainer's own start-up check, which imports no
training library unless the method needs one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kubetune.api.contract import ExitCode, TrainerResult
from kubetune.cli import main as kubetune_main
from kubetune_trainer.cli import main as trainer_main
from support.trainer_config import data_entry, trainer_config, write_config

QLORA = {"type": "QLoRA", "quantization": {"bits": 4, "quantType": "nf4"}}
QLORA_REFUSAL = "QLoRA needs a CUDA GPU (bitsandbytes 4-bit), and none is visible"


@pytest.fixture(scope="module")
def without_cuda() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this test is about a machine without CUDA")


def _qlora_config(tmp_path: Path) -> Path:
    wire = trainer_config(tmp_path, train=[data_entry("train.jsonl")]).to_wire()
    wire["spec"]["method"] = QLORA
    path = tmp_path / "config.json"
    path.write_text(json.dumps(wire))
    return path


def test_trainer_check_refuses_qlora_without_cuda_as_a_run_would(tmp_path: Path, without_cuda: None) -> None:
    result_path = tmp_path / "check.json"
    code = trainer_main(["train", "--config", str(_qlora_config(tmp_path)), "--check",
                         "--result-path", str(result_path)])
    assert code == ExitCode.PERMANENT
    result = TrainerResult.model_validate_json(result_path.read_text())
    assert result.status == "Failed" and result.reason is not None and result.reason.value == "UnsupportedDevice"
    assert result.message is not None and result.message.startswith(QLORA_REFUSAL)
    assert not (tmp_path / "work").exists()  # nothing loaded, nothing trained


def test_trainer_check_passes_lora_without_importing_training_libraries(tmp_path: Path) -> None:
    config = write_config(tmp_path, trainer_config(tmp_path, train=[data_entry("train.jsonl")]))
    code = ("import sys; from kubetune_trainer.cli import main; rc = main(sys.argv[1:]); "
            "print(sorted(m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules)); sys.exit(rc)")
    run = subprocess.run([sys.executable, "-c", code, "train", "--config", str(config), "--check",
                          "--result-path", str(tmp_path / "check.json")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines() == ["check passed: this machine can run LoRA", "[]"]
    assert not (tmp_path / "check.json").exists() and not (tmp_path / "work").exists()


def test_dry_run_of_qlora_without_cuda_fails_with_the_trainers_error(tmp_path: Path, without_cuda: None,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "qlora.yaml"
    manifest.write_text(
        "apiVersion: kubetune.io/v1alpha1\nkind: TuningJob\nmetadata: {name: qlora}\nspec:\n"
        "  baseModel: {scratch: {}}\n"
        f"  method: {json.dumps(QLORA)}\n"
        "  datasets: {train: [{source: {configMap: {name: rows, key: rows.jsonl}}}]}\n"
        "  output: {pvc: {claimName: models, path: qlora}}\n"
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: rows}\ndata: {rows.jsonl: '{\"text\": \"hi\"}'}\n")
    code = kubetune_main(["run", "-f", str(manifest), "--workdir", str(tmp_path / "out"), "--dry-run", "--plain"])
    captured = capsys.readouterr()
    assert code == ExitCode.PERMANENT
    assert f"error: the trainer refuses TuningJob qlora (UnsupportedDevice): {QLORA_REFUSAL}" in captured.err
    assert "nothing was run" in captured.err
    assert "kind: TrainerConfig" not in captured.out  # no "would run with" config printed
