"""Generate the CustomResourceDefinitions from the API models.

pydantic emits JSON Schema (draft 2020-12) with $defs, anyOf-with-null and numeric
exclusive bounds; Kubernetes wants a *structural* OpenAPI v3 schema: everything inlined,
`nullable` instead of null types, boolean exclusive bounds, and every node typed.
`kubetune crds` writes the result to crds/ and to the Helm chart's crds/.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from kubetune.api import GROUP, VERSION, Dataset, TuningJob

# Keywords a structural schema may carry; anything else pydantic emits is dropped.
_KEPT = {
    "type", "description", "properties", "items", "required", "enum", "default", "format",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
    "pattern", "minItems", "maxItems", "additionalProperties", "nullable",
}
# Free-form by nature (core/v1 types we do not re-declare): kept as arbitrary objects.
_FREE_FORM_PATHS = {("spec", "tolerations", "[]")}


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: str
    json_path: str
    description: str
    priority: int = 0

    def to_crd(self) -> dict[str, Any]:
        column: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path,
                                  "description": self.description}
        if self.priority:
            column["priority"] = self.priority
        return column


@dataclass(frozen=True)
class Resource:
    model: type[BaseModel]
    kind: str
    plural: str
    short_names: tuple[str, ...]
    columns: tuple[PrinterColumn, ...]

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


_AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation.")

RESOURCES = (
    Resource(
        model=TuningJob, kind="TuningJob", plural="tuningjobs", short_names=("tj",),
        columns=(
            PrinterColumn("Phase", "string", ".status.phase", "Where the run is."),
            PrinterColumn("Model", "string", ".spec.baseModel.repo", "Base model repo."),
            PrinterColumn("Method", "string", ".spec.method.type", "LoRA, QLoRA or Full."),
            PrinterColumn("Progress", "integer", ".status.progress.percent", "Percent of steps done."),
            PrinterColumn("Loss", "number", ".status.progress.loss", "Latest training loss."),
            _AGE,
            PrinterColumn("ETA", "integer", ".status.progress.etaSeconds", "Seconds left (estimate).", 1),
            PrinterColumn("Output", "string", ".spec.output.repo", "Hub repo the model goes to.", 1),
            PrinterColumn("World", "integer", ".status.worldSize", "Training processes (nodes x GPUs).", 1),
        ),
    ),
    Resource(
        model=Dataset, kind="Dataset", plural="datasets", short_names=("tds",),
        columns=(
            PrinterColumn("Phase", "string", ".status.phase", "Pending, Validating, Ready, Invalid, Failed."),
            PrinterColumn("Format", "string", ".status.detectedFormat", "Row format found."),
            PrinterColumn("Rows", "integer", ".status.rows", "Rows read."),
            PrinterColumn("Source", "string", ".status.source", "Where the data lives."),
            _AGE,
        ),
    ),
)


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """Replace every $ref by a copy of its definition (the models have no recursion)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
            # A description at the reference site is more specific than the class docstring.
            extra = {k: v for k, v in node.items() if k != "$ref"}
            return _inline({**target, **extra}, defs)
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _structural(node: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """One JSON Schema node -> one structural OpenAPI v3 node."""
    node = dict(node)
    if path in _FREE_FORM_PATHS:
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                **({"description": node["description"]} if "description" in node else {})}
    variants = node.pop("anyOf", None)
    if variants is not None:
        non_null = [v for v in variants if v.get("type") != "null"]
        if len(non_null) != 1:
            raise ValueError(f"{'.'.join(path)}: only X-or-null unions are supported, got {variants}")
        merged = {**non_null[0], **{k: v for k, v in node.items() if k != "default" or v is not None}}
        if len(non_null) < len(variants):
            merged["nullable"] = True
        return _structural(merged, path)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in node and not isinstance(node[bound], bool):
            node[flag] = node.pop(bound)
            node[bound] = True
    if node.get("default") is None:
        node.pop("default", None)
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    out = {k: v for k, v in node.items() if k in _KEPT}
    if "properties" in out:
        out["type"] = "object"
        out["properties"] = {name: _structural(sub, (*path, name)) for name, sub in out["properties"].items()}
    if "items" in out:
        out["items"] = _structural(out["items"], (*path, "[]"))
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _structural(out["additionalProperties"], (*path, "{}"))
    elif "additionalProperties" in out:
        # extra="forbid" emits false; structural schemas express that by listing properties.
        del out["additionalProperties"]
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "type" not in out and "x-kubernetes-preserve-unknown-fields" not in out:
        raise ValueError(f"{'.'.join(path) or '<root>'}: no type in {node}")
    return out


def _one_of_rules(schema: dict[str, Any]) -> None:
    """Exactly-one-of groups the models enforce, told to the API server too (allowed in structural schemas)."""
    groups = {
        "source": ["hf", "url", "configMap", "pvc"],
        "baseModel": ["repo", "path", "scratch"],
    }

    def visit(node: dict[str, Any]) -> None:
        props = node.get("properties", {})
        for name, sub in props.items():
            if name in groups and set(groups[name]) <= set(sub.get("properties", {})):
                sub["oneOf"] = [{"required": [key]} for key in groups[name]]
            visit(sub)
        if "items" in node:
            visit(node["items"])

    visit(schema)


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    inlined = _inline(raw, raw.pop("$defs", {}))
    schema = _structural(inlined, ())
    # apiVersion/kind/metadata are the API server's; it validates them itself.
    props = schema["properties"]
    props["apiVersion"] = {"type": "string", "description": "kubetune.io/v1alpha1"}
    props["kind"] = {"type": "string", "description": props["kind"].get("description", "")}
    props["metadata"] = {"type": "object"}
    schema["required"] = ["spec"]
    _one_of_rules(schema)
    return schema


def build_crd(resource: Resource) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": resource.crd_name, "labels": {"app.kubernetes.io/part-of": "kubetune"}},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": resource.kind,
                "listKind": f"{resource.kind}List",
                "plural": resource.plural,
                "singular": resource.kind.lower(),
                "shortNames": list(resource.short_names),
                "categories": ["kubetune"],
            },
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [c.to_crd() for c in resource.columns],
                "schema": {"openAPIV3Schema": openapi_schema(resource.model)},
            }],
        },
    }


def render_crds() -> dict[str, str]:
    """File name -> YAML text, for every CRD."""
    header = "# Generated by `kubetune crds` from operator/kubetune/api. Do not edit by hand.\n"
    return {
        f"{r.crd_name}.yaml": header + yaml.safe_dump(build_crd(r), sort_keys=False, width=120)
        for r in RESOURCES
    }


def write_crds(*folders: Path) -> list[Path]:
    written = []
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in render_crds().items():
            path = folder / name
            path.write_text(text)
            written.append(path)
    return written
