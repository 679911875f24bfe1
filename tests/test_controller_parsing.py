"""A TuningJob version is parsed once for all the passes that see it; the kept versions are bounded."""

from __future__ import annotations

from typing import Any

from kubetune.builders.names import spec_hash
from kubetune.controller.parsing import RecentlyParsed

NS = "default"


def body(name: str, version: int, repo: str = "o/m") -> dict[str, Any]:
    return {"apiVersion": "kubetune.io/v1alpha1", "kind": "TuningJob",
            "metadata": {"name": name, "namespace": NS, "resourceVersion": str(version)},
            "spec": {"baseModel": {"scratch": {}}, "datasets": {"train": [{"dataset": "chats"}]},
                     "output": {"repo": repo}}}


def test_a_version_is_parsed_once_and_a_new_version_again() -> None:
    parsed = RecentlyParsed(4)
    first = parsed.get(NS, "run", body("run", 1))
    assert first.tuningjob is not None and first.error is None
    assert parsed.get(NS, "run", body("run", 1)) is first
    edited = parsed.get(NS, "run", body("run", 2, repo="o/other"))
    assert edited is not first
    assert edited.tuningjob is not None and edited.tuningjob.spec.output.repo == "o/other"
    assert edited.spec_hash() == spec_hash(edited.tuningjob.spec) != first.spec_hash()


def test_an_invalid_spec_gives_its_reason() -> None:
    bad = body("run", 1)
    bad["spec"]["hyperparameters"] = {"learningRate": "fast"}
    parsed = RecentlyParsed(4).get(NS, "run", bad)
    assert parsed.tuningjob is None and parsed.error is not None and "learningRate" in parsed.error


def test_only_the_most_recently_passed_runs_are_kept() -> None:
    parsed = RecentlyParsed(2)
    a = parsed.get(NS, "a", body("a", 1))
    parsed.get(NS, "b", body("b", 1))
    assert parsed.get(NS, "a", body("a", 1)) is a  # a is now the most recent
    parsed.get(NS, "c", body("c", 1))  # b, the least recent, goes
    assert len(parsed) == 2
    assert parsed.get(NS, "a", body("a", 1)) is a
    parsed.forget(NS, "a")
    assert parsed.get(NS, "a", body("a", 1)) is not a
