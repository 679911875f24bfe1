"""Read the YAML a user would `kubectl apply` and validate it with the API models.

Every problem is reported with the document it is in (file, 1-based index, kind/name),
the field path as written in YAML (camelCase) and what to do about it; all problems of
all files are collected before anything runs, so one attempt shows them all.
"""

from __future__ import annotations

import base64
import binascii
import os
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from kubetune.api import API_VERSION, Dataset, DataSource, SecretKeyRef, TuningJob
from kubetune.api.contract import HF_TOKEN_ENV
from kubetune.api.errors import did_you_mean, explain_validation_error

ModelT = TypeVar("ModelT", bound=BaseModel)
Key = tuple[str, str]  # (namespace, name)

# Kinds the local mode reads; anything else (Namespace, PVC, RBAC, ...) is noted and skipped.
_KUBETUNE_KINDS = ("TuningJob", "Dataset")
_CORE_KINDS = ("Secret", "ConfigMap")


@dataclass(frozen=True)
class DocumentRef:
    """Where an object came from, as shown in error messages."""

    file: str
    index: int  # 1-based position among the file's documents
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.file} document {self.index} ({self.kind}/{self.name or '?'})"


@dataclass(frozen=True)
class Loaded(Generic[ModelT]):
    """A validated object and the document it came from."""

    obj: ModelT
    ref: DocumentRef


@dataclass
class Manifests:
    """Everything the files hold that the local mode uses."""

    tuning_jobs: list[Loaded[TuningJob]] = field(default_factory=list)
    datasets: dict[Key, Loaded[Dataset]] = field(default_factory=dict)
    secrets: dict[Key, dict[str, str]] = field(default_factory=dict)
    config_maps: dict[Key, dict[str, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def secret_value(self, namespace: str, ref: SecretKeyRef) -> str | None:
        return self.secrets.get((namespace, ref.name), {}).get(ref.key)


class ManifestError(Exception):
    """One or more documents are invalid; `problems` lists each with its location and fix."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def load_manifests(paths: Iterable[str | Path], environ: typing.Mapping[str, str] | None = None) -> Manifests:
    """Parse and validate the files; raise ManifestError listing every problem found."""
    env = os.environ if environ is None else environ
    manifests = Manifests()
    problems: list[str] = []
    for path in paths:
        _load_file(Path(path), manifests, problems)
    if not problems:
        problems.extend(check_references(manifests, env))
    if not problems and not manifests.tuning_jobs and not manifests.datasets:
        files = ", ".join(str(p) for p in paths)
        problems.append(f"{files}: no TuningJob or Dataset found: nothing to run "
                        f"(expected documents with apiVersion: {API_VERSION})")
    if problems:
        raise ManifestError(problems)
    return manifests


def _load_file(path: Path, manifests: Manifests, problems: list[str]) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problems.append(f"{path}: cannot read the file: {exc.strerror or exc}")
        return
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        problems.append(f"{path}: not valid YAML: {exc}")
        return
    for index, doc in enumerate(documents, start=1):
        if doc is None:  # an empty document between two `---`
            continue
        _load_document(path, index, doc, manifests, problems)


def _load_document(path: Path, index: int, doc: Any, manifests: Manifests, problems: list[str]) -> None:
    if not isinstance(doc, dict):
        problems.append(f"{path} document {index}: expected a mapping with apiVersion, kind and metadata, "
                        f"got {type(doc).__name__}")
        return
    kind = str(doc.get("kind", ""))
    raw_metadata = doc.get("metadata")
    metadata: dict[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
    ref = DocumentRef(str(path), index, kind or "?", str(metadata.get("name", "")))
    if kind in _KUBETUNE_KINDS:
        api_version = doc.get("apiVersion")
        if api_version != API_VERSION:
            problems.append(f"{ref}: apiVersion: expected {API_VERSION}, got {api_version!r}: "
                            f"set apiVersion: {API_VERSION}")
            return
        model: type[TuningJob] | type[Dataset] = TuningJob if kind == "TuningJob" else Dataset
        try:
            obj = model.model_validate(doc)
        except ValidationError as exc:
            problems.extend(f"{ref}: {line}" for line in explain_validation_error(exc, model))
            return
        if isinstance(obj, TuningJob):
            if any(j.obj.metadata.name == obj.metadata.name and j.obj.metadata.namespace == obj.metadata.namespace
                   for j in manifests.tuning_jobs):
                problems.append(f"{ref}: metadata.name: a TuningJob {obj.metadata.name!r} appears twice: "
                                "rename one")
            manifests.tuning_jobs.append(Loaded(obj, ref))
        else:
            key = (obj.metadata.namespace, obj.metadata.name)
            if key in manifests.datasets:
                problems.append(f"{ref}: metadata.name: a Dataset {obj.metadata.name!r} appears twice "
                                f"(first in {manifests.datasets[key].ref}): rename one")
            manifests.datasets[key] = Loaded(obj, ref)
    elif kind in _CORE_KINDS:
        name = metadata.get("name")
        if not isinstance(name, str) or not name:
            problems.append(f"{ref}: metadata.name: required: give the {kind} a name")
            return
        key = (str(metadata.get("namespace") or "default"), name)
        values = _secret_values(ref, doc, problems) if kind == "Secret" else _config_map_values(ref, doc, problems)
        (manifests.secrets if kind == "Secret" else manifests.config_maps)[key] = values
    else:
        manifests.notes.append(f"{ref}: skipped: the local mode runs TuningJobs and Datasets "
                               f"(and reads Secrets and ConfigMaps), not {kind or 'documents without a kind'}")


def _secret_values(ref: DocumentRef, doc: dict[str, Any], problems: list[str]) -> dict[str, str]:
    """stringData as written, data base64-decoded (stringData wins, as in Kubernetes)."""
    values: dict[str, str] = {}
    data = doc.get("data") or {}
    if not isinstance(data, dict):
        problems.append(f"{ref}: data: expected a mapping of key: base64 value")
        data = {}
    for key, encoded in data.items():
        try:
            values[str(key)] = base64.b64decode(str(encoded), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            # Never echo the value: it is a secret.
            problems.append(f"{ref}: data.{key}: not valid base64: encode it (base64 -w0) or move it to stringData")
    string_data = doc.get("stringData") or {}
    if not isinstance(string_data, dict):
        problems.append(f"{ref}: stringData: expected a mapping of key: value")
        string_data = {}
    values.update({str(k): str(v) for k, v in string_data.items()})
    return values


def _config_map_values(ref: DocumentRef, doc: dict[str, Any], problems: list[str]) -> dict[str, str]:
    data = doc.get("data") or {}
    if not isinstance(data, dict):
        problems.append(f"{ref}: data: expected a mapping of key: value")
        return {}
    return {str(k): str(v) for k, v in data.items()}


def check_references(manifests: Manifests, environ: typing.Mapping[str, str]) -> list[str]:
    """What the cluster would find missing at run time, found before anything runs."""
    problems: list[str] = []
    for loaded_ds in manifests.datasets.values():
        ds = loaded_ds.obj
        problems.extend(_check_source(loaded_ds.ref, "spec.source", ds.spec.source, ds.metadata.namespace, manifests))
        if ds.spec.token_secret_ref is not None:
            problems.extend(_check_secret(loaded_ds.ref, "spec.tokenSecretRef", ds.spec.token_secret_ref,
                                          ds.metadata.namespace, manifests, environ, fallback_env=None))
    for loaded in manifests.tuning_jobs:
        job = loaded.obj
        namespace = job.metadata.namespace
        for group in ("train", "validation"):
            for i, entry in enumerate(getattr(job.spec.datasets, group)):
                where = f"spec.datasets.{group}[{i}]"
                if entry.dataset is not None and (namespace, entry.dataset) not in manifests.datasets:
                    known = sorted(n for (ns, n) in manifests.datasets if ns == namespace)
                    hint = did_you_mean(entry.dataset, known)
                    problems.append(
                        f"{loaded.ref}: {where}.dataset: no Dataset {entry.dataset!r} in namespace {namespace!r} "
                        f"in the files{hint}: add its manifest with -f, or use an inline source"
                    )
                if entry.source is not None:
                    problems.extend(_check_source(loaded.ref, f"{where}.source", entry.source, namespace, manifests))
                if entry.token_secret_ref is not None:
                    problems.extend(_check_secret(loaded.ref, f"{where}.tokenSecretRef", entry.token_secret_ref,
                                                  namespace, manifests, environ, fallback_env=None))
        if job.spec.hf_token_secret_ref is not None:
            problems.extend(_check_secret(loaded.ref, "spec.hfTokenSecretRef", job.spec.hf_token_secret_ref,
                                          namespace, manifests, environ, fallback_env=HF_TOKEN_ENV))
    return problems


def _check_source(ref: DocumentRef, where: str, source: DataSource, namespace: str,
                  manifests: Manifests) -> list[str]:
    cm = source.config_map
    if cm is None:
        return []
    data = manifests.config_maps.get((namespace, cm.name))
    if data is None:
        return [f"{ref}: {where}.configMap.name: no ConfigMap {cm.name!r} in namespace {namespace!r} in the files: "
                "add its manifest with -f"]
    if cm.key not in data:
        return [f"{ref}: {where}.configMap.key: ConfigMap {cm.name!r} has no key {cm.key!r} "
                f"(keys: {', '.join(sorted(data)) or 'none'})"]
    return []


def _check_secret(ref: DocumentRef, where: str, secret: SecretKeyRef, namespace: str, manifests: Manifests,
                  environ: typing.Mapping[str, str], fallback_env: str | None) -> list[str]:
    if manifests.secret_value(namespace, secret) is not None:
        return []
    if fallback_env is not None and environ.get(fallback_env):
        return []
    if (namespace, secret.name) in manifests.secrets:
        missing = f"Secret {secret.name!r} has no key {secret.key!r}"
    else:
        missing = f"no Secret {secret.name!r} in namespace {namespace!r} in the files"
    alternative = f", or export {fallback_env}" if fallback_env else ""
    return [f"{ref}: {where}: {missing}: add the Secret (stringData: {{{secret.key}: ...}}) with -f{alternative}"]
