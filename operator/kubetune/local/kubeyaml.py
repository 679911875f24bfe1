"""YAML read as kubectl reads it, so a local run accepts and refuses what a cluster would.

PyYAML follows YAML 1.1 to the letter; kubectl (go-yaml, then JSON) differs where it matters here:
- `1e-4` is a number (PyYAML reads a string: its float pattern wants a dot);
- a timestamp-like scalar stays a string (PyYAML makes a datetime, which JSON cannot carry);
- a key given twice in one mapping is an error naming both lines (PyYAML keeps the last silently);
- `1:30` is a string, not the sexagesimal 90.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterator
from typing import Any

import yaml

_FLOAT_TAG = "tag:yaml.org,2002:float"
_INT_TAG = "tag:yaml.org,2002:int"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MERGE_TAG = "tag:yaml.org,2002:merge"

# go-yaml's plain-scalar numbers (resolve.go): decimal, octal, hex and binary ints with optional
# underscores; floats with an optional dot and exponent; the .inf/.nan spellings.
_GO_INT = re.compile(r"^[-+]?(?:0b[01][01_]*|0x[0-9a-fA-F][0-9a-fA-F_]*|0o?[0-7][0-7_]*|0|[1-9][0-9_]*)$")
_GO_FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
                       r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")


class DuplicateKeyError(yaml.MarkedYAMLError):
    """A mapping names the same key twice; the mark is the second occurrence."""


class KubeLoader(yaml.SafeLoader):
    """SafeLoader with go-yaml's number and timestamp rules, refusing duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: dict[Hashable, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue  # `<<: *base` may be overridden by the keys next to it, by design
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # SafeLoader refuses it below, with its own message
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKeyError(
                    problem=f"duplicate key {key!r} (first on line {seen[key]}): keep one of them "
                            "(a cluster refuses the document)",
                    problem_mark=key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _resolvers_without(*tags: str) -> dict[str | None, list[tuple[str, re.Pattern[str]]]]:
    base: dict[str | None, list[tuple[str, re.Pattern[str]]]] = yaml.SafeLoader.yaml_implicit_resolvers
    return {first: [(tag, rx) for tag, rx in resolvers if tag not in tags] for first, resolvers in base.items()}


KubeLoader.yaml_implicit_resolvers = _resolvers_without(_FLOAT_TAG, _INT_TAG, _TIMESTAMP_TAG)
KubeLoader.add_implicit_resolver(_INT_TAG, _GO_INT, list("-+0123456789"))
KubeLoader.add_implicit_resolver(_FLOAT_TAG, _GO_FLOAT, list("-+0123456789."))


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node)).replace("_", "")
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    if digits.startswith("0b"):
        return sign * int(digits[2:], 2)
    if digits.startswith("0x"):
        return sign * int(digits[2:], 16)
    if digits.startswith("0o"):
        return sign * int(digits[2:], 8)
    if len(digits) > 1 and digits.startswith("0"):
        return sign * int(digits, 8)
    return sign * int(digits)


KubeLoader.add_constructor(_INT_TAG, _construct_int)


def load_all(text: str) -> Iterator[Any]:
    """The documents of a multi-document YAML stream (None for an empty one)."""
    return yaml.load_all(text, Loader=KubeLoader)


def describe_yaml_error(exc: yaml.YAMLError) -> str:
    """One line: where (line, column) and what, without PyYAML's multi-line layout."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        return f"{where}{what}"
    return " ".join(str(exc).split())
