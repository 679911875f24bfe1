"""`pvc:CLAIM/PATH` and paths inside volumes: one parser in kubetune.api, for the operator and the trainer."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kubetune.api import Mounts, TuningJob
from kubetune.api.errors import explain_validation_error
from kubetune.api.volumes import PvcPath, VolumePathError, parse_pvc_path, path_inside_volume


@pytest.mark.parametrize(("text", "parsed"), [
    ("pvc:models/org/tiny", PvcPath("models", "org/tiny")),
    ("pvc: models/org/tiny", PvcPath("models", "org/tiny")),  # the space the operator always allowed
    ("  pvc:  models /org/tiny ", PvcPath("models", "org/tiny")),
    ("pvc:/models//org/./tiny/", PvcPath("models", "org/tiny")),
    ("pvc:models", PvcPath("models", "")),
    ("/models/org/tiny", None),
    ("models/org/tiny", None),
])
def test_pvc_paths_are_read_one_way(text: str, parsed: PvcPath | None) -> None:
    assert parse_pvc_path(text) == parsed


@pytest.mark.parametrize(("text", "problem"), [
    ("pvc: models/../secrets", "must stay inside the volume: remove '..'"),
    ("pvc:models/org/../../x", "must stay inside the volume: remove '..'"),
    ("pvc:", "names no claim"),
    ("pvc: /", "names no claim"),
    ("pvc:Models_X/y", "is not a PersistentVolumeClaim name"),
])
def test_bad_pvc_paths_are_refused_naming_the_field(text: str, problem: str) -> None:
    with pytest.raises(VolumePathError) as caught:
        parse_pvc_path(text, field="baseModel.path")
    assert str(caught.value).startswith("baseModel.path: ") and problem in str(caught.value)
    assert repr(text) in str(caught.value)


def test_paths_inside_a_volume_start_at_its_root_and_never_leave_it() -> None:
    assert path_inside_volume("/a//b/./c.jsonl") == "a/b/c.jsonl"
    mounts = Mounts(pvcs={"data": "/mnt/pvc/data"})
    assert mounts.path_of_pvc("data", "/etc/passwd") == "/mnt/pvc/data/etc/passwd"
    assert mounts.path_of_pvc("data", "") == "/mnt/pvc/data"
    with pytest.raises(VolumePathError, match=r"remove '\.\.'"):
        mounts.path_of_pvc("data", "a/../../etc/passwd")


def test_the_api_refuses_a_base_model_path_leaving_its_volume() -> None:
    body = {"apiVersion": "kubetune.io/v1alpha1", "kind": "TuningJob", "metadata": {"name": "j"},
            "spec": {"baseModel": {"path": "pvc: models/../secrets"}, "datasets": {"train": [{"dataset": "d"}]},
                     "output": {"repo": "o/m"}}}
    with pytest.raises(ValidationError) as caught:
        TuningJob.model_validate(body)
    [line] = explain_validation_error(caught.value, TuningJob)
    assert line == "spec.baseModel.path: 'pvc: models/../secrets' must stay inside the volume: remove '..'"
