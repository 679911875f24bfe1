"""Read the YAML a user would `kubectl apply` and validate it as the cluster would.

Every problem is reported with the document it is in (file, 1-based index, kind/name),
the field path as written in YAML (camelCase) and what to do about it; all problems of
all files are collected before anything runs, so one attempt shows them all.

What a cluster refuses is refused here too: a quoted number or boolean (the CRD's schema
types are checked strictly, not coerced), a key given twice, a kind with no CRD in the
kubetune.io group or a misspelt kind.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
import os
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Generic, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from kubetune.api import API_VERSION, GROUP, Dataset, DataSource, SecretKeyRef, TuningJob
from kubetune.api.contract import HF_TOKEN_ENV
from kubetune.api.errors import did_you_mean, explain_validation_error
from kubetune.local.kubeyaml import describe_yaml_error, load_all
from kubetune.local.manifest_files import ManifestText, read_manifest_texts

ModelT = TypeVar("ModelT", bound=BaseModel)
Key = tuple[str, str]  # (namespace, name)

# Kinds the local mode reads; anything else (Namespace, PVC, RBAC, ...) is noted and skipped,
# unless it claims the kubetune.io group or is a misspelling of one of these.
_KUBETUNE_KINDS = ("TuningJob", "Dataset")
_CORE_KINDS = ("Secret", "ConfigMap")
_TAKEN_KINDS = "TuningJob and Dataset (and Secret and ConfigMap, which it reads)"
# How alike (difflib ratio, case ignored) a kind must be to one of ours to be taken for a typo of it.
_TYPO_LIKENESS = 0.8


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


def load_manifests(paths: Iterable[str | Path], environ: typing.Mapping[str, str] | None = None, *,
                   recursive: bool = False, stdin: BinaryIO | None = None) -> Manifests:
    """Parse and validate the files (folders, `-` for stdin); raise ManifestError listing every problem found."""
    env = os.environ if environ is None else environ
    names = list(paths)
    manifests = Manifests()
    texts, problems = read_manifest_texts(names, recursive=recursive, stdin=stdin)
    for text in texts:
        _load_text(text, manifests, problems)
    if not problems:
        problems.extend(check_references(manifests, env))
    if not problems and not manifests.tuning_jobs and not manifests.datasets:
        files = ", ".join(str(p) for p in names)
        problems.append(f"{files}: no TuningJob or Dataset found: nothing to run "
                        f"(expected documents with apiVersion: {API_VERSION})")
    if problems:
        raise ManifestError(problems)
    return manifests


def _load_text(source: ManifestText, manifests: Manifests, problems: list[str]) -> None:
    try:
        documents = list(load_all(source.text))
    except yaml.YAMLError as exc:
        problems.append(f"{source.name}: not valid YAML: {describe_yaml_error(exc)}")
        return
    for index, doc in enumerate(documents, start=1):
        if doc is None:  # an empty document between two `---`
            continue
        _load_document(source.name, index, doc, manifests, problems)


def _load_document(file: str, index: int, doc: Any, manifests: Manifests, problems: list[str]) -> None:
    if not isinstance(doc, dict):
        problems.append(f"{file} document {index}: expected a mapping with apiVersion, kind and metadata, "
                        f"got {type(doc).__name__}")
        return
    kind = str(doc.get("kind") or "")
    raw_metadata = doc.get("metadata")
    metadata: dict[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
    ref = DocumentRef(file, index, kind or "?", str(metadata.get("name", "")))
    if kind in _KUBETUNE_KINDS:
        api_version = doc.get("apiVersion")
        if api_version != API_VERSION:
            problems.append(f"{ref}: apiVersion: expected {API_VERSION}, got {api_version!r}: "
                            f"set apiVersion: {API_VERSION}")
            return
        model: type[TuningJob] | type[Dataset] = TuningJob if kind == "TuningJob" else Dataset
        try:
            # JSON in strict mode, as the API server checks the CRD's schema: "2e-3" is not a number.
            obj = model.model_validate_json(json.dumps(_as_sent(doc), default=str), strict=True)
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
        refusal = _refuse_kind(kind, str(doc.get("apiVersion") or ""))
        if refusal:
            problems.append(f"{ref}: kind: {refusal}")
        else:
            manifests.notes.append(f"{ref}: skipped: kubetune run takes {_TAKEN_KINDS}, not {kind}")


def _refuse_kind(kind: str, api_version: str) -> str | None:
    """Why a document of another kind stops the run (a cluster would refuse it too), or None to skip it."""
    if not kind:
        return f"missing: every document needs one; kubetune run takes {_TAKEN_KINDS}"
    if kind == "TrainerConfig":
        return ("TrainerConfig is the trainer's input, not a resource (no cluster has its CRD): "
                "run it with kubetune-trainer train --config FILE, or drop the file from -f")
    ours = (*_KUBETUNE_KINDS, *_CORE_KINDS)
    close = difflib.get_close_matches(kind.lower(), [k.lower() for k in ours], n=1, cutoff=_TYPO_LIKENESS)
    if close or api_version.split("/")[0] == GROUP:
        suggestion = next((k for k in ours if close and k.lower() == close[0]), None)
        hint = f" (did you mean {suggestion!r}?)" if suggestion else ""
        group = f" in {GROUP}" if api_version.split("/")[0] == GROUP else ""
        return f"no kind {kind!r}{group}{hint}: kubetune run takes {_TAKEN_KINDS}"
    return None


def _as_sent(value: Any) -> Any:
    """The value as kubectl sends it: a float with no fraction is a JSON integer (`10.0` -> 10)."""
    if isinstance(value, dict):
        return {key: _as_sent(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_sent(item) for item in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    return value


def _secret_values(ref: DocumentRef, doc: dict[str, Any], problems: list[str]) -> dict[str, str]:
    """stringData as written, data base64-decoded (stringData wins, as in Kubernetes)."""
    values: dict[str, str] = {}
    data = doc.get("data") or {}
    if not isinstance(data, dict):
        problems.append(f"{ref}: data: expected a mapping of key: base64 value")
        data = {}
    for key, encoded in _string_values(ref, "data", data, problems, secret=True).items():
        try:
            values[key] = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            # Never echo the value: it is a secret.
            problems.append(f"{ref}: data.{key}: not valid base64: encode it (base64 -w0) or move it to stringData")
    string_data = doc.get("stringData") or {}
    if not isinstance(string_data, dict):
        problems.append(f"{ref}: stringData: expected a mapping of key: value")
        string_data = {}
    values.update(_string_values(ref, "stringData", string_data, problems, secret=True))
    return values


def _config_map_values(ref: DocumentRef, doc: dict[str, Any], problems: list[str]) -> dict[str, str]:
    data = doc.get("data") or {}
    if not isinstance(data, dict):
        problems.append(f"{ref}: data: expected a mapping of key: value")
        return {}
    return _string_values(ref, "data", data, problems, secret=False)


def _string_values(ref: DocumentRef, field: str, mapping: dict[Any, Any], problems: list[str], *,
                   secret: bool) -> dict[str, str]:
    """The values, which must be strings: a cluster refuses `key: 3` or `key: true` here."""
    values: dict[str, str] = {}
    for key, value in mapping.items():
        if isinstance(value, str):
            values[str(key)] = value
            continue
        # A Secret's value is never echoed, even a mistyped one.
        shown = "" if secret else f" {json.dumps(value, default=str)}"
        problems.append(f"{ref}: {field}.{key}: expected a string, got a {_yaml_type(value)}{shown}: quote it")
    return values


def _yaml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    return "list" if isinstance(value, list) else "mapping" if isinstance(value, dict) else type(value).__name__


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
