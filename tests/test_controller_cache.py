"""The controller's informer cache: echoes are no news, write-through never goes back in time, owners."""

from __future__ import annotations

from typing import Any

from kubetune.controller.cache import InformerCache
from kubetune.controller.objects import JOB, POD, TUNINGJOB

NS = "default"


def tuningjob(version: int, name: str = "run", **status: Any) -> dict[str, Any]:
    return {"apiVersion": "kubetune.io/v1alpha1", "kind": "TuningJob",
            "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "resourceVersion": str(version),
                         "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}",
                                         "team": "nlp"}},
            "spec": {"baseModel": {"scratch": {}}}, "status": status}


def job(version: int, owner: str = "run", *, name: str | None = None, owner_api: str = "kubetune.io/v1alpha1",
        **status: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name or f"{owner}-train", "namespace": NS, "resourceVersion": str(version),
                         "ownerReferences": [{"apiVersion": owner_api, "kind": "TuningJob", "name": owner,
                                              "uid": f"uid-{owner}", "controller": True}]},
            "spec": {"suspend": False, "template": {"spec": {"containers": [{"name": "trainer", "env": []}]}}},
            "status": status}


def pod(version: int, job_name: str = "run-train", name: str = "run-train-abcde", phase: str = "Pending"
        ) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "resourceVersion": str(version),
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job_name}]},
            "spec": {"containers": [{"name": "trainer", "image": "x", "env": [{"name": "A", "value": "1"}],
                                     "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
                     "volumes": [{"name": "config"}]},
            "status": {"phase": phase}}


def version(obj: dict[str, Any] | None) -> str | None:
    return None if obj is None else obj["metadata"]["resourceVersion"]


def test_a_version_seen_before_is_no_news() -> None:
    cache = InformerCache()
    assert cache.record(TUNINGJOB, tuningjob(1)) is True
    assert cache.record(TUNINGJOB, tuningjob(1)) is False  # e.g. the same object in a relisting
    assert cache.record(TUNINGJOB, tuningjob(2, phase="Pending")) is True
    assert version(cache.get(TUNINGJOB, NS, "run")) == "2"


def test_the_echo_of_a_written_through_answer_is_no_news() -> None:
    cache = InformerCache()
    cache.record(TUNINGJOB, tuningjob(1))
    cache.write(TUNINGJOB, tuningjob(2, phase="Starting"))  # our status patch's answer
    assert (cache.get(TUNINGJOB, NS, "run") or {})["status"] == {"phase": "Starting"}
    assert cache.record(TUNINGJOB, tuningjob(2, phase="Starting")) is False  # ... and its watch event
    assert cache.record(TUNINGJOB, tuningjob(3, phase="Starting")) is True  # someone else's change


def test_a_late_answer_never_replaces_what_the_watch_brought_since() -> None:
    cache = InformerCache()
    cache.record(TUNINGJOB, tuningjob(1))
    # Our patch made version 2; the watch delivered it, then a user's edit (3), before our
    # worker got to write its answer through.
    assert cache.record(TUNINGJOB, tuningjob(2, phase="Starting")) is True
    assert cache.record(TUNINGJOB, tuningjob(3, phase="Starting")) is True
    cache.write(TUNINGJOB, tuningjob(2, phase="Starting"))
    assert version(cache.get(TUNINGJOB, NS, "run")) == "3"


def test_a_deletion_is_news_and_no_late_answer_brings_the_object_back() -> None:
    cache = InformerCache()
    cache.record(TUNINGJOB, tuningjob(1))
    assert cache.record(TUNINGJOB, tuningjob(2), deleted=True) is True
    cache.write(TUNINGJOB, tuningjob(2, phase="Running"))
    assert cache.get(TUNINGJOB, NS, "run") is None
    # A new object of the same name is cached as any other.
    assert cache.record(TUNINGJOB, tuningjob(7)) is True
    assert version(cache.get(TUNINGJOB, NS, "run")) == "7"


def test_children_are_found_by_owner_and_a_pods_owner_through_its_job() -> None:
    cache = InformerCache()
    cache.record(TUNINGJOB, tuningjob(1))
    # The Pod's event may come before its Job's (separate watches): kept, owner unknown yet.
    cache.record(POD, pod(3))
    assert cache.owner(POD, pod(3)) is None
    cache.record(JOB, job(2))
    assert cache.owner(JOB, job(2)) == (TUNINGJOB, NS, "run")
    assert cache.owner(POD, pod(3)) == (TUNINGJOB, NS, "run")
    assert cache.owner(TUNINGJOB, tuningjob(1)) == (TUNINGJOB, NS, "run")
    assert [version(p) for p in cache.owned((JOB, NS, "run-train"), POD)] == ["3"]

    cache.record(POD, pod(4, name="run-train-fghij", phase="Running"))
    assert sorted(p["metadata"]["name"] for p in cache.owned((JOB, NS, "run-train"), POD)) == [
        "run-train-abcde", "run-train-fghij"]
    cache.record(POD, pod(5), deleted=True)
    assert [p["metadata"]["name"] for p in cache.owned((JOB, NS, "run-train"), POD)] == ["run-train-fghij"]
    assert cache.owned((JOB, NS, "other-train"), POD) == []


def test_a_job_owned_by_something_else_has_no_owner_here() -> None:
    cache = InformerCache()
    foreign = job(2, owner_api="example.org/v1", name="theirs")
    cache.record(JOB, foreign)
    assert cache.owner(JOB, foreign) is None


def test_only_what_is_read_is_kept() -> None:
    cache = InformerCache()
    cache.record(TUNINGJOB, tuningjob(1))
    cache.record(JOB, job(2, active=1))
    cache.record(POD, pod(3))
    kept_tj = cache.get(TUNINGJOB, NS, "run") or {}
    assert "managedFields" not in kept_tj["metadata"]
    assert kept_tj["metadata"]["annotations"] == {"team": "nlp"}
    assert kept_tj["spec"] == {"baseModel": {"scratch": {}}}
    kept_job = cache.get(JOB, NS, "run-train") or {}
    assert kept_job["spec"] == {"suspend": False} and kept_job["status"] == {"active": 1}
    kept_pod = cache.get(POD, NS, "run-train-abcde") or {}
    assert kept_pod["spec"] == {"containers": [{"name": "trainer", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}
    assert kept_pod["status"] == {"phase": "Pending"}


def test_items_and_counts_are_per_kind_and_namespace() -> None:
    cache = InformerCache()
    cache.record(TUNINGJOB, tuningjob(1, name="a"))
    other = tuningjob(2, name="b")
    other["metadata"]["namespace"] = "team-b"
    cache.record(TUNINGJOB, other)
    cache.record(JOB, job(3, owner="a"))
    assert sorted(o["metadata"]["name"] for o in cache.items(TUNINGJOB)) == ["a", "b"]
    assert [o["metadata"]["name"] for o in cache.items(TUNINGJOB, "team-b")] == ["b"]
    assert (cache.count(TUNINGJOB), cache.count(JOB), cache.count(POD)) == (2, 1, 0)
