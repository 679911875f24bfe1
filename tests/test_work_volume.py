"""Durable runs in the builders: the work volume claim, where the Job mounts it, the run identity,
the grace period and the failure policy that lets a preempted trainer resume uncounted."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from kubernetes.client import ApiClient
from pydantic import ValidationError
from test_builders import BASE_TJ, DATASET, SETTINGS, datasets, make_tj, merged, mounts_of, pod_spec, volume_at

from kubetune.api import ExitCode, RunIdentity, TuningJob, run_hash
from kubetune.api.run import local_uid
from kubetune.builders import (
    build_trainer_config_map,
    build_training_job,
    build_work_volume_claim,
    owner_reference,
    resolve_trainer_config,
    work_volume_claim_name,
)


def render(spec: dict[str, Any] | None = None, settings: Any = SETTINGS, **meta: Any) -> dict[str, Any]:
    tj = make_tj(spec, **meta)
    config = resolve_trainer_config(tj, datasets(), settings)
    owner = owner_reference(tj.model_dump(mode="json", by_alias=True))
    return {"tj": tj, "config": config, "job": build_training_job(tj, config, settings, owner),
            "claim": build_work_volume_claim(tj, settings, owner), "owner": owner,
            "config_map": build_trainer_config_map(tj, config, owner)}


def _round_trip(obj: dict[str, Any], kind: str) -> Any:
    client = ApiClient()
    return client.sanitize_for_serialization(client._ApiClient__deserialize(obj, kind))  # type: ignore[attr-defined]


def test_by_default_each_tuningjob_gets_its_own_claim_owned_by_it() -> None:
    r = render()
    claim, job, config = r["claim"], r["job"], r["config"]
    name = work_volume_claim_name("ministral-support")
    assert name == "ministral-support-work"
    assert claim["metadata"]["name"] == name and claim["metadata"]["namespace"] == "ml"
    assert claim["metadata"]["ownerReferences"] == [r["owner"]]  # the garbage collector deletes it with the TuningJob
    assert claim["metadata"]["labels"]["kubetune.io/tuningjob"] == "ministral-support"
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem",
                             "resources": {"requests": {"storage": SETTINGS.work_volume_size}}}
    assert _round_trip(claim, "V1PersistentVolumeClaim") == claim
    # The Job mounts that claim, writable, and the trainer's work folder is on it.
    assert volume_at(job, f"/mnt/pvc/{name}")["persistentVolumeClaim"] == {"claimName": name, "readOnly": False}
    assert mounts_of(job)[f"/mnt/pvc/{name}"]["readOnly"] is False
    assert config.work_dir == f"/mnt/pvc/{name}" and config.work_location == f"pvc:{name}"
    assert config.run == RunIdentity(uid="tj-uid-1", hash=run_hash(config.spec))
    # The Job says where its run folder is, for status.workDir.
    assert job["metadata"]["annotations"]["kubetune.io/work-dir"] == f"pvc:{name}/runs/tj-uid-1-{config.run.hash}"


def test_claim_size_class_modes_from_the_spec_or_the_settings() -> None:
    settings = replace(SETTINGS, work_volume_size="300Gi", work_volume_storage_class="standard-rwo")
    assert render(settings=settings)["claim"]["spec"]["resources"]["requests"]["storage"] == "300Gi"
    assert render(settings=settings)["claim"]["spec"]["storageClassName"] == "standard-rwo"
    claim = render({"workVolume": {"size": "1Ti", "storageClassName": "fast-nvme",
                                   "accessModes": ["ReadWriteOncePod"]}}, settings=settings)["claim"]
    assert claim["spec"] == {"accessModes": ["ReadWriteOncePod"], "volumeMode": "Filesystem",
                             "resources": {"requests": {"storage": "1Ti"}}, "storageClassName": "fast-nvme"}


def test_a_retained_claim_has_no_owner_so_it_outlives_the_tuningjob() -> None:
    claim = render({"workVolume": {"retainPolicy": "Retain"}})["claim"]
    assert "ownerReferences" not in claim["metadata"]
    assert claim["metadata"]["annotations"] == {"kubetune.io/retain-policy": "Retain"}
    assert _round_trip(claim, "V1PersistentVolumeClaim") == claim


def test_an_existing_claim_is_used_not_created() -> None:
    r = render({"workVolume": {"claimName": "team-scratch", "path": "kubetune/a"}})
    assert r["claim"] is None
    assert r["config"].work_dir == "/mnt/pvc/team-scratch/kubetune/a"
    assert r["config"].work_location == "pvc:team-scratch/kubetune/a"
    assert r["job"]["metadata"]["annotations"]["kubetune.io/work-dir"].startswith("pvc:team-scratch/kubetune/a/runs/")
    assert volume_at(r["job"], "/mnt/pvc/team-scratch")["persistentVolumeClaim"]["readOnly"] is False


def test_with_output_pvc_the_runs_live_beside_the_output() -> None:
    r = render({"output": {"repo": None, "pvc": {"claimName": "models", "path": "ministral"}}})
    assert r["claim"] is None
    assert r["config"].work_dir == "/mnt/pvc/models/ministral"
    assert r["config"].work_location == "pvc:models/ministral"
    # ...unless the spec asks for a claim of its own.
    r = render({"output": {"repo": None, "pvc": {"claimName": "models", "path": "m"}}, "workVolume": {"size": "9Gi"}})
    assert r["claim"] is not None and r["config"].work_dir == "/mnt/pvc/ministral-support-work"
    assert {m: v["readOnly"] for m, v in mounts_of(r["job"]).items() if m.startswith("/mnt/pvc/")} == {
        "/mnt/pvc/models": False, "/mnt/pvc/ministral-support-work": False}


@pytest.mark.parametrize("ephemeral_by", ["spec", "settings"])
def test_ephemeral_keeps_the_work_folder_on_the_pod_disk(ephemeral_by: str) -> None:
    if ephemeral_by == "spec":
        r = render({"workVolume": {"ephemeral": True}})
    else:
        r = render(settings=replace(SETTINGS, work_volume_ephemeral=True))
    assert r["claim"] is None and r["config"].work_dir == "/workspace" and r["config"].work_location is None
    assert "emptyDir" in volume_at(r["job"], "/workspace")
    assert r["job"]["metadata"]["annotations"]["kubetune.io/work-dir"] == \
        f"emptyDir:/workspace/runs/{r['config'].run.folder_name}"
    assert not [v for v in pod_spec(r["job"])["volumes"] if "persistentVolumeClaim" in v]
    # A volume the spec names wins over the operator's ephemeral default.
    named = render({"workVolume": {"size": "5Gi"}}, settings=replace(SETTINGS, work_volume_ephemeral=True))
    assert named["claim"] is not None


@pytest.mark.parametrize(("work_volume", "message"), [
    ({"claimName": "x", "size": "1Gi"}, "size apply to the claim kubetune creates"),
    ({"claimName": "x", "retainPolicy": "Retain"}, "retainPolicy apply to the claim kubetune creates"),
    ({"ephemeral": True, "claimName": "x"}, "remove claimName or set ephemeral: false"),
    ({"ephemeral": True, "storageClassName": "fast"}, "remove storageClassName"),
    ({"path": "a"}, "path is a folder inside claimName"),
    ({"claimName": "x", "path": "a/../../b"}, "stay inside the volume"),
    ({"size": "lots"}, "size"),
    ({"accessModes": ["ReadOnlyMany"]}, "accessModes"),
])
def test_bad_work_volume_specs_are_refused_with_what_to_do(work_volume: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        make_tj({"workVolume": work_volume})
    assert message in str(caught.value)


def test_grace_period_for_a_checkpoint_and_a_failure_policy_that_resumes() -> None:
    job = render()["job"]
    assert pod_spec(job)["terminationGracePeriodSeconds"] == SETTINGS.trainer_termination_grace_seconds == 600
    assert pod_spec(render({"terminationGracePeriodSeconds": 1800})["job"])["terminationGracePeriodSeconds"] == 1800
    rules = job["spec"]["podFailurePolicy"]["rules"]
    container = job["spec"]["template"]["spec"]["containers"][0]["name"]
    assert rules == [
        {"action": "FailJob", "onExitCodes": {"containerName": container, "operator": "In",
                                              "values": [ExitCode.PERMANENT]}},
        # SIGTERM -> checkpoint -> exit 130: retried without counting against backoffLimit.
        {"action": "Ignore", "onExitCodes": {"containerName": container, "operator": "In",
                                             "values": [ExitCode.INTERRUPTED]}},
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]
    assert job["spec"]["podReplacementPolicy"] == "Failed"  # never two trainers on one work folder
    assert _round_trip(job, "V1Job") == job
    with pytest.raises(ValidationError):
        make_tj({"terminationGracePeriodSeconds": 5})


def test_the_run_hash_follows_what_changes_the_model_and_nothing_else() -> None:
    base = resolve_trainer_config(make_tj(), datasets()).spec

    def hash_of(spec: dict[str, Any], *bodies: dict[str, Any]) -> str:
        return run_hash(resolve_trainer_config(make_tj(spec), datasets(*bodies)).spec)

    same: list[dict[str, Any]] = [
            {"output": {"repo": "other/repo", "private": False}}, {"resources": {"gpus": 8, "memory": "1Ti"}},
            {"suspend": True}, {"workVolume": {"size": "1Ti"}}, {"terminationGracePeriodSeconds": 60},
            {"hyperparameters": {"saveSteps": 7, "loggingSteps": 1, "evalSteps": 3}}, {"backoffLimit": 9},
            {"nodeSelector": {"a": "b"}}, {"priorityClassName": "low"}, {"trainerImage": "x/y:1"}]
    for spec in same:
        assert hash_of(spec) == run_hash(base), spec
    different: list[dict[str, Any]] = [
                 {"hyperparameters": {"learningRate": 1e-5}}, {"hyperparameters": {"maxSteps": 10}},
                 {"method": {"type": "Full"}}, {"method": {"lora": {"r": 4}}},
                 {"baseModel": {"revision": "v2"}}, {"output": {"merge": True}},
                 {"datasets": {"train": [{"dataset": "support-chats", "weight": 2}]}}]
    hashes = {hash_of(spec) for spec in different}
    assert run_hash(base) not in hashes and len(hashes) == len(different)
    # A Dataset validated at another revision is other data: another run.
    moved = merged(DATASET, {"status": {"revision": "f" * 40}})
    assert hash_of({}, moved) != run_hash(base)
    # Which Secret holds a private dataset's token does not change the data.
    private = {"source": {"hf": {"repo": "o/p"}}, "tokenSecretRef": {"name": "a"}}
    assert hash_of({"datasets": {"train": [private]}}) == hash_of(
        {"datasets": {"train": [{**private, "tokenSecretRef": {"name": "b"}}]}})


def test_two_tuningjobs_never_share_a_run_folder() -> None:
    first = render({"output": {"repo": None, "pvc": {"claimName": "shared", "path": "models"}}})["config"]
    second = render({"output": {"repo": None, "pvc": {"claimName": "shared", "path": "models"}}},
                    uid="tj-uid-2")["config"]
    assert first.work_dir == second.work_dir  # same claim and path...
    assert first.run is not None and second.run is not None
    assert first.run.hash == second.run.hash  # ...same spec...
    assert first.run.folder_name != second.run.folder_name  # ...their own folders all the same
    assert first.run.is_earlier_spec(second.run.folder_name) is False
    assert first.run.is_earlier_spec(f"tj-uid-1-{'0' * 16}") is True


def test_local_uids_are_valid_and_distinct() -> None:
    a, b = local_uid("default", "quickstart"), local_uid("default", "quick.start")
    assert a != b and a.startswith("local-")
    for uid in (a, b, local_uid("ns", "x" * 253)):
        RunIdentity(uid=uid, hash="0" * 16)
    tj = TuningJob.model_validate(merged(BASE_TJ, {"metadata": {"uid": None}}))
    config = resolve_trainer_config(tj, datasets())
    assert config.run is not None and config.run.uid == local_uid("ml", "ministral-support")
