"""The CRDs are generated from the models, structural, and agree with the models on examples."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from kubetune.api import Dataset, TrainerConfig, TuningJob, ValidatorConfig
from kubetune.crdgen import RESOURCES, render_crds

ROOT = Path(__file__).resolve().parent.parent
CRD_FOLDERS = [ROOT / "crds", ROOT / "charts" / "kubetune" / "crds"]
MODELS = {"TuningJob": TuningJob, "Dataset": Dataset}


def _schema(kind: str) -> dict[str, Any]:
    for text in render_crds().values():
        crd = yaml.safe_load(text)
        if crd["spec"]["names"]["kind"] == kind:
            return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    raise KeyError(kind)


def _openapi_validator(kind: str) -> jsonschema.Draft4Validator:
    """OpenAPI v3.0 schemas are draft-4 JSON Schema plus `nullable` (ignored here: examples carry no nulls)."""
    return jsonschema.Draft4Validator(_schema(kind))


def _example_documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted((ROOT / "examples").rglob("*.yaml")):
        for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc and doc.get("apiVersion", "").startswith("kubetune.io/"):
                yield f"{path.name}#{index}", doc


@pytest.mark.parametrize("folder", CRD_FOLDERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_crds_match_the_generator(folder: Path) -> None:
    expected = render_crds()
    found = {p.name: p.read_text() for p in folder.glob("*.yaml")}
    assert found == expected, f"{folder} is stale: run `kubetune crds`"


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key, sub in node.get("properties", {}).items():
            yield from _walk(sub, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            yield from _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            yield from _walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("kind", ["TuningJob", "Dataset"])
def test_schema_is_structural(kind: str) -> None:
    text = yaml.safe_dump(_schema(kind))
    assert "$ref" not in text and "anyOf" not in text and "allOf" not in text and "$defs" not in text
    for path, node in _walk(_schema(kind)):
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{path} has no type"
        for variant in node.get("oneOf", []):
            # Inside oneOf a structural schema may only constrain, never declare types or fields.
            assert set(variant) <= {"required"}, f"{path}: oneOf carries {set(variant)}"
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            if bound in node:
                assert isinstance(node[bound], bool), f"{path}.{bound} must be a boolean in OpenAPI v3.0"


@pytest.mark.parametrize("kind", ["TuningJob", "Dataset"])
def test_every_status_field_of_the_model_is_declared(kind: str) -> None:
    status_model = MODELS[kind].model_fields["status"].annotation.__args__[0]  # type: ignore[union-attr]
    declared = _schema(kind)["properties"]["status"]["properties"]
    aliases = {field.alias for field in status_model.model_fields.values()}
    assert aliases <= set(declared)


def test_printer_columns_point_at_declared_fields() -> None:
    for resource in RESOURCES:
        schema = _schema(resource.kind)
        for column in resource.columns:
            if column.json_path.startswith(".metadata."):
                continue  # the API server's own fields
            node: dict[str, Any] = schema
            for part in column.json_path.strip(".").split("."):
                assert part in node.get("properties", {}), f"{resource.kind} column {column.name}: {part} missing"
                node = node["properties"][part]
    names = {r.kind: [c.name for c in r.columns if not c.priority] for r in RESOURCES}
    assert names["TuningJob"] == ["Phase", "Model", "Method", "Progress", "Loss", "Age"]
    assert names["Dataset"] == ["Phase", "Format", "Rows", "Source", "Age"]


def test_examples_exist_and_validate_against_models_and_schema() -> None:
    docs = list(_example_documents())
    kinds = {doc["kind"] for _, doc in docs}
    assert {"TuningJob", "Dataset"} <= kinds
    for where, doc in docs:
        if doc["kind"] == "TrainerConfig":  # the trainer's input, not a resource: no CRD to check against
            TrainerConfig.model_validate(doc)
            continue
        if doc["kind"] == "ValidatorConfig":  # the validator's input, likewise
            ValidatorConfig.model_validate(doc)
            continue
        MODELS[doc["kind"]].model_validate(doc)
        errors = list(_openapi_validator(doc["kind"]).iter_errors(doc))
        assert not errors, f"{where}: {[e.message for e in errors]}"


def test_seed_scenario_example_says_what_the_brief_says() -> None:
    docs = dict(_example_documents())
    job = TuningJob.model_validate(next(d for w, d in docs.items() if w.startswith("ministral-alpaca")
                                        and d["kind"] == "TuningJob"))
    hp = job.spec.hyperparameters
    assert job.spec.base_model.repo == "mistralai/Ministral-8B-Instruct-2410"
    assert job.spec.method.type.value == "LoRA"
    assert (hp.learning_rate, hp.epochs, hp.gradient_accumulation_steps, hp.per_device_batch_size) == (1e-4, 3, 4, 16)
    assert (hp.precision.value, hp.logging_steps, hp.save_steps, hp.max_samples) == ("bf16", 50, 500, 100000)
    assert job.spec.output.repo == "my-org/ministral-finetuned"
    assert job.spec.hf_token_secret_ref is not None and job.spec.hf_token_secret_ref.name == "hf-token"


MINIMAL_JOB: dict[str, Any] = {
    "apiVersion": "kubetune.io/v1alpha1",
    "kind": "TuningJob",
    "metadata": {"name": "tiny"},
    "spec": {
        "baseModel": {"repo": "org/model"},
        "datasets": {"train": [{"dataset": "data"}]},
        "output": {"repo": "org/tuned"},
    },
}


def _mutated(path: list[str], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(MINIMAL_JOB)
    node = doc
    for key in path[:-1]:
        node = node.setdefault(key, {})
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


_DELETE = object()

INVALID_JOBS = [
    ("unknown method", ["spec", "method"], {"type": "Prefix"}, "method.type"),
    ("negative epochs", ["spec", "hyperparameters"], {"epochs": -1}, "hyperparameters.epochs"),
    ("missing baseModel", ["spec", "baseModel"], _DELETE, "baseModel"),
    ("learning rate as a word", ["spec", "hyperparameters"], {"learningRate": "fast"}, "hyperparameters.learningRate"),
    ("two dataset sources", ["spec", "datasets"],
     {"train": [{"source": {"hf": {"repo": "a/b"}, "url": {"url": "https://x.example/d.jsonl"}}}]},
     "datasets.train.0.source"),
    ("unknown field", ["spec", "hyperparameter"], {"epochs": 1}, "hyperparameter"),
]


@pytest.mark.parametrize(("case", "path", "value", "field"), INVALID_JOBS, ids=[c[0] for c in INVALID_JOBS])
def test_invalid_jobs_are_refused_by_models_and_schema(case: str, path: list[str], value: Any, field: str) -> None:
    doc = _mutated(path, value)
    with pytest.raises(Exception) as caught:
        TuningJob.model_validate(doc)
    assert field in str(caught.value), f"{case}: the model's error does not name {field}: {caught.value}"
    errors = list(_openapi_validator("TuningJob").iter_errors(doc))
    if case != "unknown field":  # the API server prunes (or with kubectl, warns about) unknown fields
        assert errors, f"{case}: the CRD schema accepts it"


def test_minimal_job_is_valid_in_both() -> None:
    TuningJob.model_validate(MINIMAL_JOB)
    assert not list(_openapi_validator("TuningJob").iter_errors(MINIMAL_JOB))


@pytest.mark.cluster
def test_crds_are_accepted_by_a_real_api_server() -> None:
    import os
    import subprocess

    kubeconfig = os.environ.get("KUBETUNE_TEST_KUBECONFIG")
    if not kubeconfig:
        pytest.skip("set KUBETUNE_TEST_KUBECONFIG to a cluster (kind, k3d, ...) to run")
    done = subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, "apply", "--dry-run=server", "-f", str(ROOT / "crds")],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
