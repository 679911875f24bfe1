"""Base models from a folder: `pvc:CLAIM/PATH` through the config's mounts, or an absolute path."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from kubetune.api.basemodel import ScratchModel
from kubetune.api.contract import ExitCode, TrainerResult
from kubetune_trainer.cli import main
from kubetune_trainer.training.scratch import build_scratch_model
from support.toydata import generation_rows, write_jsonl
from support.trainer_config import data_entry, run_dir, trainer_config, write_config

pytestmark = pytest.mark.slow


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _train(tmp_path: Path, path: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, TrainerResult]:
    write_jsonl(tmp_path / "data" / "train.jsonl", generation_rows("alpaca", 24))
    config = trainer_config(tmp_path, train=[data_entry("train.jsonl")],
                            hyperparameters={"maxSteps": 2, "loggingSteps": 1})
    config.spec.base_model = config.spec.base_model.model_validate({"path": path})
    config.mounts.pvcs["models"] = str(tmp_path / "models")
    code = main(["train", "--config", str(write_config(tmp_path, config))])
    capsys.readouterr()
    return code, TrainerResult.model_validate_json((tmp_path / "result.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("kind", ["pvc", "absolute"])
def test_trains_from_a_model_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    folder = tmp_path / "models" / "org" / "tiny"
    texts = [value for row in generation_rows("alpaca", 64) for value in row.values() if value]
    build_scratch_model(ScratchModel.model_validate({"vocabSize": 300}), texts, folder, seed=5)
    before = _digests(folder)
    path = "pvc:models/org/tiny" if kind == "pvc" else str(folder)

    code, result = _train(tmp_path, path, capsys)
    assert code == ExitCode.OK, result
    assert result.model is not None and result.model.base_model_revision is None
    assert _digests(folder) == before, "the base folder (a read-only volume in a Pod) is left as it was"
    final = run_dir(tmp_path) / "final"
    assert not (final / "base").exists(), "only a scratch base is shipped with the adapter"
    adapter_config = yaml.safe_load((final / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(folder)
    card = (final / "README.md").read_text()
    assert "base_model" not in yaml.safe_load(card.split("---")[1]), "a path is no Hub id"
    assert path in card

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(folder), final)
    assert any("lora_A" in name for name, _ in adapter.named_parameters())


@pytest.mark.parametrize(
    ("path", "reason"),
    [("pvc:models/missing", "ModelNotFound"), ("pvc:other/model", "InvalidConfig"),
     ("models/relative", "InvalidConfig")],
)
def test_a_bad_model_path_fails_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str], path: str,
                                                reason: str) -> None:
    (tmp_path / "models").mkdir()
    code, result = _train(tmp_path, path, capsys)
    assert (code, result.reason, result.retryable) == (ExitCode.PERMANENT, reason, False), result
    assert result.message is not None and path in result.message
    assert not (run_dir(tmp_path) / "final").exists()


def test_a_pvc_path_with_a_space_is_found_where_the_operator_mounted_it(tmp_path: Path) -> None:
    # Regression: the operator read "pvc: models/..." as claim "models" and mounted it; the trainer read
    # claim " models", said it was not mounted, and never checked the path for "..".
    from kubetune.api import TuningJob
    from kubetune.builders import resolve_trainer_config
    from kubetune_trainer.training.modelload import resolve_base_model

    tj = TuningJob.model_validate({
        "apiVersion": "kubetune.io/v1alpha1", "kind": "TuningJob", "metadata": {"name": "j"},
        "spec": {"baseModel": {"path": "pvc: models/org/tiny"}, "output": {"repo": "o/m"},
                 "datasets": {"train": [{"source": {"hf": {"repo": "o/d"}}}]}}})
    config = resolve_trainer_config(tj, {})
    assert set(config.mounts.pvcs) == {"models", "j-work"}  # the model's claim and the work volume
    folder = tmp_path / "models" / "org" / "tiny"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    local_mounts = config.mounts.model_copy(update={"pvcs": {"models": str(tmp_path / "models")}})
    resolved = resolve_base_model(config.spec.base_model, work_dir=tmp_path / "work", mounts=local_mounts,
                                  token=None, seed=0, scratch_texts=list)
    assert resolved.folder == folder and not resolved.scratch

    # The trainer checks the path itself too (a spec the API models did not check: model_construct).
    from kubetune.api.basemodel import BaseModelSpec
    from kubetune_trainer.errors import TrainerFailure

    with pytest.raises(TrainerFailure) as caught:
        resolve_base_model(BaseModelSpec.model_construct(path="pvc: models/../org"), work_dir=tmp_path / "work",
                           mounts=local_mounts, token=None, seed=0, scratch_texts=list)
    assert caught.value.reason == "InvalidConfig"
    assert caught.value.message == "baseModel.path: 'pvc: models/../org' must stay inside the volume: remove '..'"


def test_a_pvc_path_leaving_its_volume_is_refused_naming_the_field(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    write_jsonl(tmp_path / "data" / "train.jsonl", generation_rows("alpaca", 4))
    wire = trainer_config(tmp_path, train=[data_entry("train.jsonl")]).to_wire()
    wire["spec"]["baseModel"] = {"path": "pvc: models/../data"}
    (tmp_path / "config.json").write_text(json.dumps(wire))
    # The config cannot be read, so its resultPath is unknown: the command line names it.
    code = main(["train", "--config", str(tmp_path / "config.json"), "--result-path", str(tmp_path / "result.json")])
    capsys.readouterr()
    result = TrainerResult.model_validate_json((tmp_path / "result.json").read_text(encoding="utf-8"))
    assert (code, result.reason) == (ExitCode.PERMANENT, "InvalidConfig")
    assert result.message is not None and "spec.baseModel.path" in result.message
    assert "must stay inside the volume: remove '..'" in result.message
