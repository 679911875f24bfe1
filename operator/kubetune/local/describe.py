"""Print a TuningJob or Dataset the way `kubectl describe` prints a custom resource.

kubectl renders a custom resource's fields as nested "Title Case:  value" lines and ends
with an Events table; the local mode prints the same shape so the two read alike.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubetune.api import Dataset, TuningJob
from kubetune.local.display import format_duration
from kubetune.status.events import EventRecord

_INDENT = "  "


SOURCE = "kubetune-local"


@dataclass(frozen=True)
class TimedEvent:
    """An Event the status derivation produced, and when: `kubectl describe` shows its age."""

    record: EventRecord
    time: datetime


def title_case(key: str) -> str:
    """camelCase -> "Camel Case", as kubectl describe shows field names (baseEvalLoss -> Base Eval Loss)."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", key)
    return words[:1].upper() + words[1:]


def describe_tuning_job(job: TuningJob, events: Sequence[TimedEvent] = (), *, now: datetime | None = None) -> str:
    return _describe(job, events, now)


def describe_dataset(ds: Dataset, events: Sequence[TimedEvent] = (), *, now: datetime | None = None) -> str:
    return _describe(ds, events, now)


def _describe(obj: TuningJob | Dataset, events: Sequence[TimedEvent], now: datetime | None) -> str:
    now = now or datetime.now(UTC)
    meta = obj.metadata
    lines = _header(obj.kind, obj.api_version, meta.name, meta.namespace, meta.labels, meta.annotations)
    lines.append("Spec:")
    lines.extend(_render(obj.spec.to_wire(), 1))
    status = obj.status.to_wire() if obj.status is not None else {}
    lines.append("Status:")
    if status:
        lines.extend(_status_lines(status, now))
    lines.extend(_events(events, now))
    return "\n".join(lines) + "\n"


def _header(kind: str, api_version: str, name: str, namespace: str, labels: dict[str, str],
            annotations: dict[str, str]) -> list[str]:
    def pairs(values: dict[str, str]) -> list[str]:
        if not values:
            return ["<none>"]
        return [f"{k}={v}" for k, v in sorted(values.items())]

    rows = [("Name", [name]), ("Namespace", [namespace]), ("Labels", pairs(labels)),
            ("Annotations", pairs(annotations)), ("API Version", [api_version]), ("Kind", [kind])]
    lines = []
    for label, values in rows:
        lines.append(f"{label + ':':<14}{values[0]}")
        lines.extend(f"{'':<14}{v}" for v in values[1:])
    return lines


# Status sections in the order a reader wants them: where it is, why, then the figures.
_STATUS_ORDER = ("phase", "message", "error", "conditions", "progress", "worldSize", "effectiveBatchSize", "metrics",
                 "samples", "result", "usage", "pinned", "startTime", "completionTime", "jobName", "workDir",
                 "observedGeneration", "logTail")


def _status_lines(status: dict[str, Any], now: datetime) -> list[str]:
    lines: list[str] = []
    keys = [k for k in _STATUS_ORDER if k in status] + [k for k in status if k not in _STATUS_ORDER]
    for key in keys:
        value = status[key]
        if value in ([], {}):
            continue
        if key == "conditions":
            lines.extend(_conditions(value))
        elif key == "progress":
            lines.append(f"{_INDENT}Progress:")
            lines.extend(_render(_readable_progress(value), 2))
        elif key == "metrics":
            lines.append(f"{_INDENT}Metrics:")
            lines.extend(_render(value, 2))
            lines.extend(f"{_INDENT * 2}{change}" for change in _improvement(value))
        elif key == "logTail":
            lines.append(f"{_INDENT}Log Tail:")
            lines.extend(f"{_INDENT * 2}{line}" for line in value)
        else:
            lines.extend(_render({key: value}, 1))
    return lines


def _readable_progress(progress: dict[str, Any]) -> dict[str, Any]:
    shown = dict(progress)
    if "etaSeconds" in shown:
        shown["eta"] = format_duration(shown.pop("etaSeconds"))
    return shown


def _improvement(metrics: dict[str, Any]) -> list[str]:
    """Base -> tuned at a glance: the eval loss, and for preference tuning the preference accuracy."""
    changes = []
    base, tuned = metrics.get("baseEvalLoss"), metrics.get("evalLoss")
    if isinstance(base, int | float) and isinstance(tuned, int | float) and base > 0:
        changes.append(f"Eval Loss Change:  {base:.4f} -> {tuned:.4f} ({100 * (tuned - base) / base:+.1f}%)")
    base, tuned = metrics.get("basePreferenceAccuracy"), metrics.get("preferenceAccuracy")
    if isinstance(base, int | float) and isinstance(tuned, int | float):
        changes.append(f"Preference Accuracy Change:  {base:.1%} -> {tuned:.1%}")
    return changes


def _conditions(conditions: list[dict[str, Any]]) -> list[str]:
    header = ("Type", "Status", "Reason", "Message")
    rows = [(c.get("type", ""), c.get("status", ""), c.get("reason", ""), c.get("message", "")) for c in conditions]
    return [f"{_INDENT}Conditions:", *_table(header, rows, 2)]


def _events(events: Sequence[TimedEvent], now: datetime) -> list[str]:
    if not events:
        return ["Events:       <none>"]
    header = ("Type", "Reason", "Age", "From", "Message")
    rows = [(e.record.type, e.record.reason, _age(now - e.time), SOURCE, e.record.message) for e in events]
    return ["Events:", *_table(header, rows, 1)]


def _age(delta: Any) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], depth: int) -> list[str]:
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header) - 1)]

    def row(values: Sequence[str]) -> str:
        cells = [f"{v!s:<{w}}" for v, w in zip(values, widths, strict=False)]
        return (_INDENT * depth + "  ".join([*cells, str(values[-1])])).rstrip()

    underline = ["-" * len(h) for h in header]
    return [row(header), row(underline), *(row(r) for r in rows)]


def _render(value: Any, depth: int) -> list[str]:
    """Nested mappings and lists as kubectl describe shows them."""
    pad = _INDENT * depth
    lines: list[str] = []
    if isinstance(value, dict):
        nested = {k for k, v in value.items() if isinstance(v, dict | list) and v}
        # kubectl aligns the values of one mapping in a column.
        width = max((len(title_case(str(k))) + 1 for k in value if k not in nested), default=0)
        for key, item in value.items():
            label = title_case(str(key)) + ":"
            if key in nested:
                lines.append(pad + label)
                lines.extend(_render(item, depth + 1))
            else:
                lines.append(f"{pad}{label:<{width}}  {_scalar(item)}".rstrip())
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                lines.extend(_render(item, depth))
                lines.append("")
            else:
                lines.append(f"{pad}{_scalar(item)}")
        if lines and lines[-1] == "":
            lines.pop()
    else:
        lines.append(pad + _scalar(value))
    return lines


def _scalar(value: Any) -> str:
    if value is None or value == {} or value == []:
        return "<none>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)

