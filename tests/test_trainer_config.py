"""The trainer reads its config through one loader: same major contract version, unknown fields dropped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubetune.api.contract import CONTRACT_VERSION, ExitCode, TrainerConfig, TrainerResult, ValidatorConfig
from kubetune_trainer.cli import main
from kubetune_trainer.config import load_config
from kubetune_trainer.errors import TrainerFailure
from support.trainer_config import data_entry, trainer_config


def config_wire(tmp_path: Path) -> dict[str, Any]:
    return trainer_config(tmp_path, train=[data_entry("train.jsonl")]).to_wire()


def write(tmp_path: Path, wire: dict[str, Any]) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(wire), encoding="utf-8")
    return path


def test_a_newer_minor_with_unknown_fields_at_any_depth_is_read_with_one_log_line(tmp_path: Path) -> None:
    wire = config_wire(tmp_path)
    expected = TrainerConfig.model_validate(wire)
    wire["contractVersion"] = "1.7"
    wire["priorityHint"] = "high"
    wire["spec"]["hyperparameters"]["divergenceStop"] = {"factor": 3}
    wire["spec"]["datasets"]["train"][0]["source"]["pvc"]["readAhead"] = True
    wire["mounts"]["csi"] = {"scratch": "/mnt/csi"}
    lines: list[str] = []

    config = load_config(write(tmp_path, wire), TrainerConfig, log=lines.append)

    assert config.model_copy(update={"contract_version": CONTRACT_VERSION}) == expected
    assert config.contract_version == "1.7"
    [line] = lines
    for path in ("priorityHint", "spec.hyperparameters.divergenceStop", "spec.datasets.train[0].source.pvc.readAhead",
                 "mounts.csi"):
        assert path in line
    assert "1.7" in line and CONTRACT_VERSION in line


def test_a_config_with_nothing_unknown_logs_nothing(tmp_path: Path) -> None:
    lines: list[str] = []
    load_config(write(tmp_path, config_wire(tmp_path)), TrainerConfig, log=lines.append)
    assert lines == []


def test_the_validator_config_is_read_the_same_way(tmp_path: Path) -> None:
    wire = ValidatorConfig.model_validate({"name": "d", "source": {"hf": {"repo": "o/d"}}}).to_wire()
    wire["source"]["hf"]["shuffleBuffer"] = 1000  # a field a newer contract minor might add
    lines: list[str] = []
    config = load_config(write(tmp_path, wire), ValidatorConfig, log=lines.append)
    assert config.source.hf is not None and config.source.hf.repo == "o/d"
    assert len(lines) == 1 and "source.hf.shuffleBuffer" in lines[0]


@pytest.mark.parametrize(("version", "said"), [
    ("2.0", "written for contract version 2.0"),
    ("0.9", "written for contract version 0.9"),
    (None, "names no contractVersion"),
    ("one", "contractVersion 'one' is not MAJOR.MINOR"),
])
def test_another_major_version_is_refused_naming_both_versions(tmp_path: Path, version: str | None,
                                                               said: str) -> None:
    wire = config_wire(tmp_path)
    if version is None:
        del wire["contractVersion"]
    else:
        wire["contractVersion"] = version
    with pytest.raises(TrainerFailure) as caught:
        load_config(write(tmp_path, wire), TrainerConfig)
    assert caught.value.reason == "InvalidConfig"
    message = caught.value.message
    assert said in message and f"this trainer speaks contract version {CONTRACT_VERSION}" in message
    assert "use a trainer image that matches the operator's version" in message


def test_unknown_fields_do_not_hide_real_errors(tmp_path: Path) -> None:
    wire = config_wire(tmp_path)
    wire["spec"]["hyperparameters"]["learningRate"] = "fast"
    wire["spec"]["somethingNew"] = 1
    with pytest.raises(TrainerFailure) as caught:
        load_config(write(tmp_path, wire), TrainerConfig)
    assert "spec.hyperparameters.learningRate: expected a number" in caught.value.message
    assert "somethingNew" not in caught.value.message


def test_the_train_command_refuses_another_major_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wire = config_wire(tmp_path)
    wire["contractVersion"] = "2.1"
    code = main(["train", "--config", str(write(tmp_path, wire)), "--result-path", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    result = TrainerResult.model_validate_json((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert (code, result.reason, result.retryable) == (ExitCode.PERMANENT, "InvalidConfig", False)
    assert result.message is not None and "2.1" in result.message and CONTRACT_VERSION in result.message
    assert "trainer image" in out


def test_the_validate_command_refuses_another_major_version(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    wire = ValidatorConfig.model_validate({"name": "d", "source": {"hf": {"repo": "o/d"}}}).to_wire()
    wire["contractVersion"] = "3.0"
    code = main(["validate", "--config", str(write(tmp_path, wire)), "--result-path", str(tmp_path / "r.json")])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (code, report["outcome"], report["reason"]) == (ExitCode.PERMANENT, "Failed", "InvalidConfig")
    assert "3.0" in report["message"] and CONTRACT_VERSION in report["message"]
