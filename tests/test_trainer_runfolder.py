"""The run folder and the delivery to output.pvc, without training: attempts counted, a folder of
another run refused, paths shown as people find them, hard links or copies, idempotent delivery."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from kubetune.api import RunIdentity, TrainingMetrics
from kubetune.api.contract import TrainerConfig
from kubetune_trainer.errors import TrainerFailure
from kubetune_trainer.events import Reporter
from kubetune_trainer.output.delivery import DELIVERED_MARKER, deliver_to_volume, output_location
from kubetune_trainer.runfolder import RUN_MARKER, RunFolder, open_run_folder
from kubetune_trainer.workdir import CHECKPOINT_COMPLETE, FinishedModel, WorkDir, mark_complete
from support.trainer_config import data_entry, trainer_config

RUN = RunIdentity(uid="7f3c2a10-uid", hash="0123456789abcdef")


def config_for(tmp_path: Path, **update: object) -> TrainerConfig:
    config = trainer_config(tmp_path, train=[data_entry("train.jsonl")])
    return config.model_copy(update={"run": RUN, **update})


def test_every_start_opens_the_same_folder_and_counts_itself(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    first, second = open_run_folder(config), open_run_folder(config)
    assert first.work.root == second.work.root == tmp_path / "work" / "runs" / RUN.folder_name
    assert (first.attempt, second.attempt) == (1, 2)
    marker = json.loads((second.work.root / RUN_MARKER).read_text())
    assert marker == {"uid": RUN.uid, "runHash": RUN.hash, "namespace": "default", "name": "test-job", "attempts": 2}
    # Another spec of the same TuningJob left a folder: named, not reused.
    (tmp_path / "work" / "runs" / f"{RUN.uid}-{'f' * 16}").mkdir()
    (tmp_path / "work" / "runs" / f"other-uid-{'f' * 16}").mkdir()
    assert open_run_folder(config).earlier_runs == (f"{RUN.uid}-{'f' * 16}",)


def test_a_folder_holding_another_runs_work_is_refused(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    root = open_run_folder(config).work.root
    (root / RUN_MARKER).write_text(json.dumps({"uid": "someone-else", "runHash": RUN.hash, "attempts": 3}))
    with pytest.raises(TrainerFailure) as caught:
        open_run_folder(config)
    assert caught.value.reason == "InvalidConfig" and "belongs to run someone-else-" in caught.value.message


def test_paths_are_shown_as_people_find_them(tmp_path: Path) -> None:
    in_pod = open_run_folder(config_for(tmp_path, work_location="pvc:support-bot-work"))
    assert in_pod.where(in_pod.work.final) == f"pvc:support-bot-work/runs/{RUN.folder_name}/final"
    local = open_run_folder(config_for(tmp_path))
    assert local.where(local.work.final) == str(local.work.final)
    assert output_location(config_for(tmp_path, work_location="pvc:x")) == "pvc:out/model/final"
    assert output_location(config_for(tmp_path)) == str(tmp_path / "out" / "model" / "final")


def test_only_checkpoints_marked_complete_count(tmp_path: Path) -> None:
    work = WorkDir(tmp_path / "run")
    for step in (10, 20, 30):
        folder = work.checkpoints / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "trainer_state.json").write_text("{}")
    mark_complete(work.checkpoints / "checkpoint-10")
    mark_complete(work.checkpoints / "checkpoint-20")
    assert work.newest_checkpoint() == work.checkpoints / "checkpoint-20"  # 30 has its state but no mark
    assert work.discard_incomplete_checkpoints() == ["checkpoint-30"]
    assert sorted(p.name for p in work.checkpoints.iterdir()) == ["checkpoint-10", "checkpoint-20"]
    assert (work.checkpoints / "checkpoint-20" / CHECKPOINT_COMPLETE).is_file()


def _finished_run(config: TrainerConfig) -> tuple[RunFolder, FinishedModel]:
    run = open_run_folder(config)
    run.work.final.mkdir(parents=True)
    (run.work.final / "adapter_model.safetensors").write_bytes(b"weights")
    (run.work.final / "runs").mkdir()
    (run.work.final / "runs" / "events").write_bytes(b"tb")
    return run, FinishedModel(metrics=TrainingMetrics(steps=6), base_model_revision=None, merged=False)


def test_delivery_links_the_files_and_a_retry_changes_nothing(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    run, finished = _finished_run(config)
    reporter = Reporter(stream=io.StringIO())
    deliver_to_volume(config, run, finished, reporter)
    target = tmp_path / "out" / "model" / "final"
    assert (target / "adapter_model.safetensors").samefile(run.work.final / "adapter_model.safetensors")
    assert (target / "runs" / "events").read_bytes() == b"tb"
    assert json.loads((target / DELIVERED_MARKER).read_text()) == {"run": RUN.folder_name}
    before = os.stat(target).st_ino
    deliver_to_volume(config, run, finished, reporter)
    assert os.stat(target).st_ino == before, "its own model already there: nothing replaced"

    # A later run delivering to the same path replaces the folder, as a new commit to a repo would.
    other = config.model_copy(update={"run": RunIdentity(uid="another-uid", hash=RUN.hash)})
    other_run, _ = _finished_run(other)
    deliver_to_volume(other, other_run, finished, reporter)
    assert json.loads((target / DELIVERED_MARKER).read_text()) == {"run": f"another-uid-{RUN.hash}"}
    assert (run.work.final / "adapter_model.safetensors").read_bytes() == b"weights"
    assert sorted(p.name for p in target.parent.iterdir()) == ["final"], "no staging folders left behind"


def test_delivery_copies_where_hard_links_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = config_for(tmp_path)
    run, finished = _finished_run(config)

    def cross_device(src: object, dst: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    deliver_to_volume(config, run, finished, Reporter(stream=io.StringIO()))
    copied = tmp_path / "out" / "model" / "final" / "adapter_model.safetensors"
    assert copied.read_bytes() == b"weights"
    assert not copied.samefile(run.work.final / "adapter_model.safetensors")
