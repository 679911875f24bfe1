"""The `kubectl apply` commands the docs give a new user are safe to paste.

`kubectl apply -f examples/` used to replace the user's hf-token Secret with an example's
placeholder and apply a TrainerConfig, a kind no cluster has a CRD for.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# Everything that tells a user what to type: the docs, the chart's install notes, the examples' comments.
SOURCES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
           REPO / "charts" / "kubetune" / "templates" / "NOTES.txt", *sorted((REPO / "examples").glob("*.yaml"))]
# What an example may hold: the kinds our CRDs define, and ConfigMaps of inline data. Never a Secret.
APPLICABLE_KINDS = {"TuningJob", "Dataset", "ConfigMap"}


def applied_example_paths() -> Iterator[tuple[str, str]]:
    for source in SOURCES:
        for match in re.finditer(r"kubectl apply (?:[^\n|]*?\s)?-f\s+(\S+)", source.read_text()):
            target = match.group(1).strip("`")
            if target.startswith("examples"):
                yield source.relative_to(REPO).as_posix(), target


def test_the_docs_tell_users_to_apply_examples() -> None:
    assert {target for _, target in applied_example_paths()} >= {"examples/ministral-alpaca.yaml"}


@pytest.mark.parametrize(("source", "target"), sorted(set(applied_example_paths())))
def test_every_applied_example_is_a_file_of_kinds_a_cluster_takes_without_a_secret(source: str, target: str) -> None:
    path = REPO / target
    assert path.is_file(), f"{source}: `kubectl apply -f {target}`: apply files one by one, not a folder"
    kinds = [doc["kind"] for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert set(kinds) <= APPLICABLE_KINDS, f"{source}: {target} holds {sorted(set(kinds) - APPLICABLE_KINDS)}"


def test_the_token_secret_is_created_before_an_example_is_applied() -> None:
    for source in (REPO / "docs" / "helm.md", REPO / "charts" / "kubetune" / "templates" / "NOTES.txt"):
        text = source.read_text()
        assert "kubectl create secret generic hf-token" in text, source
        assert text.index("kubectl create secret generic hf-token") < text.index("kubectl apply -f examples/")
