"""`kubetune-trainer validate`: read every row of a Dataset once and report what was found.

The report goes to stdout (a human summary, then the JSON on the last line) and to the
termination-message path, where it must fit in 4096 bytes: it is shrunk field by field
(fewer errors, shorter texts) until it does, so the JSON is always whole.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kubetune.api.contract import (
    DATA_TOKEN_ENV,
    HF_TOKEN_ENV,
    TERMINATION_LOG,
    TERMINATION_MESSAGE_LIMIT,
    ExitCode,
    FailureReason,
    ValidationReport,
    ValidatorConfig,
)
from kubetune.api.dataset import DatasetFormat, RowError
from kubetune.api.redact import redact
from kubetune_trainer.formats import ClassificationExample, RowDefect, detect_format, parse_record, preview_line
from kubetune_trainer.sources import OpenedSource, SourceError, open_source
from kubetune_trainer.tokenstats import TokenMeter, load_tokenizer

DETECTION_ROWS = 50
PREVIEW_ROWS = 3
PREVIEW_CHARS = 120
_MAX_LABELS = 10000
_MESSAGE_CHARS = 1024


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class _Tally:
    max_errors: int
    rows: int = 0
    valid_rows: int = 0
    error_count: int = 0
    errors: list[RowError] = field(default_factory=list)
    preview: list[str] = field(default_factory=list)
    labels: dict[str, None] = field(default_factory=dict)  # insertion-ordered set

    def defect(self, row: int, defect: RowDefect) -> None:
        self.error_count += 1
        if len(self.errors) < self.max_errors:
            self.errors.append(RowError(row=row, field=_clip(defect.field, 256),
                                        message=_clip(defect.message, _MESSAGE_CHARS)))


def validate_dataset(config: ValidatorConfig, *, token: str | None) -> ValidationReport:
    """Stream every row; never raises for bad data or an unreachable source."""
    # Downloads (Hub files, URL bodies) are needed only while validating: a scratch folder.
    with tempfile.TemporaryDirectory(prefix="kubetune-validate-") as scratch:
        try:
            opened = open_source(config.source, mounts=config.mounts, token=token,
                                 allow_private_urls=config.allow_private_urls, cache_dir=Path(scratch))
            return _redacted(_validate_rows(config, opened, token), token)
        except SourceError as error:
            return ValidationReport(outcome="Failed", reason=error.reason, message=_clip(error.message, 2048))


def _validate_rows(config: ValidatorConfig, opened: OpenedSource, token: str | None) -> ValidationReport:
    tally = _Tally(max_errors=config.validation.max_errors)
    records = iter(opened)
    fmt = config.format
    if fmt is DatasetFormat.AUTO:
        head = list(itertools.islice(records, DETECTION_ROWS))
        records = itertools.chain(head, records)
        try:
            fmt = detect_format([r for n, r in head if n > 0 and not isinstance(r, RowDefect)], config.columns)
        except RowDefect as defect:
            tally.defect(0, defect)
            tally.rows = sum(1 for n, _ in records if n > 0)
            return _report(config, opened, tally, None, None, note=None)
    meter, note = _token_meter(config, token)
    for number, record in records:
        if number == 0:  # the file as a whole
            tally.defect(0, record if isinstance(record, RowDefect) else RowDefect("", "unreadable"))
            continue
        tally.rows += 1
        if isinstance(record, RowDefect):
            tally.defect(number, record)
            continue
        try:
            example = parse_record(record, fmt, config.columns, labels=config.labels)
        except RowDefect as defect:
            tally.defect(number, defect)
            continue
        tally.valid_rows += 1
        if len(tally.preview) < PREVIEW_ROWS:
            tally.preview.append(preview_line(example, PREVIEW_CHARS))
        if isinstance(example, ClassificationExample) and len(tally.labels) < _MAX_LABELS:
            tally.labels.update(dict.fromkeys(example.labels))
        if meter is not None:
            meter.add(example)
    stats = meter.stats() if meter is not None else None
    return _report(config, opened, tally, fmt, stats, note)


def _token_meter(config: ValidatorConfig, token: str | None) -> tuple[TokenMeter | None, str | None]:
    """A meter, or None and why: a tokenizer that will not load costs the statistics, not the verdict."""
    name = config.validation.tokenizer
    if not name:
        return None, None
    try:
        return TokenMeter(load_tokenizer(name, token), config.validation.max_seq_length), None
    except Exception as error:
        return None, f"token statistics skipped: cannot load tokenizer {name!r} ({type(error).__name__}: " \
                     f"{_clip(str(error), 200)})"


def _report(config: ValidatorConfig, opened: OpenedSource, tally: _Tally, fmt: DatasetFormat | None,
            stats: Any, note: str | None) -> ValidationReport:
    labels = list(tally.labels)
    if config.columns.label_columns and fmt is DatasetFormat.CLASSIFICATION:
        labels = list(dict.fromkeys([*config.columns.label_columns, *labels]))
    if tally.error_count:
        first = tally.errors[0]
        where = f"row {first.row}" if first.row else "the data"
        where += f", {first.field}" if first.field else ""
        message = (f"{tally.error_count} defect(s) in {tally.rows} rows; first at {where}: {first.message}")
        outcome, reason = "Invalid", FailureReason.DATASET_INVALID
    elif tally.rows == 0:
        message = f"no rows found in {', '.join(opened.files[:3]) or config.source.describe()}"
        outcome, reason = "Invalid", FailureReason.DATASET_INVALID
    else:
        message = f"{tally.valid_rows} valid rows, format {fmt}"
        outcome, reason = "Ready", None
    if note:
        message += f"; {note}"
    return ValidationReport(
        outcome=outcome, reason=reason, message=_clip(message, 2048),
        rows=tally.rows, valid_rows=tally.valid_rows, size_bytes=opened.size_bytes,
        detected_format=fmt, revision=opened.revision, errors=tally.errors, error_count=tally.error_count,
        preview=tally.preview, labels=labels[:_MAX_LABELS], token_stats=stats,
    )


def _redacted(report: ValidationReport, token: str | None) -> ValidationReport:
    secrets = [token]
    return report.model_copy(update={
        "message": redact(report.message, secrets) if report.message else report.message,
        "errors": [e.model_copy(update={"message": redact(e.message, secrets), "field": redact(e.field, secrets)})
                   for e in report.errors],
        "preview": [redact(p, secrets) for p in report.preview],
        "labels": [redact(label, secrets) for label in report.labels],
    })


# --- fitting into the termination message -----------------------------------------------------

def report_json(report: ValidationReport) -> str:
    return json.dumps(report.to_wire(), separators=(",", ":"), ensure_ascii=False)


def _size(report: ValidationReport) -> int:
    return len(report_json(report).encode("utf-8"))


def _shrink_steps(report: ValidationReport) -> list[dict[str, Any]]:
    """Ever smaller versions of the parts that can be long, least informative loss first."""
    steps: list[dict[str, Any]] = []
    for limit in (300, 160, 100):
        steps.append({"errors": [e.model_copy(update={"message": _clip(e.message, limit)}) for e in report.errors]})
    count = len(report.errors)
    while count > 1:
        count //= 2
        steps.append({"errors": [e.model_copy(update={"message": _clip(e.message, 100)})
                                 for e in report.errors[:count]]})
    steps.append({"preview": [_clip(p, 60) for p in report.preview]})
    steps.append({"preview": []})
    count = len(report.labels)
    while count > 1:
        count //= 2
        steps.append({"labels": report.labels[:count]})
    steps.append({"message": _clip(report.message or "", 500)})
    steps.append({"message": _clip(report.message or "", 160), "labels": []})
    steps.append({"errors": [], "message": _clip(report.message or "", 100)})
    return steps


def fit_report(report: ValidationReport, limit: int = TERMINATION_MESSAGE_LIMIT) -> ValidationReport:
    """The report, shrunk until its compact JSON fits in `limit` bytes."""
    fitted = report
    for update in _shrink_steps(report):
        if _size(fitted) <= limit:
            break
        fitted = fitted.model_copy(update=update)
    if _size(fitted) > limit:
        raise AssertionError("a ValidationReport cannot be shrunk below the termination-message limit")
    return fitted


# --- command line -----------------------------------------------------------------------------

def exit_code(report: ValidationReport) -> int:
    if report.outcome == "Ready":
        return ExitCode.OK
    if report.outcome == "Failed" and report.reason is FailureReason.UNREACHABLE:
        return ExitCode.RETRYABLE
    return ExitCode.PERMANENT


def summary(report: ValidationReport, name: str) -> str:
    lines = [f"Dataset {name}: {report.outcome}" + (f" ({report.reason})" if report.reason else "")]
    if report.rows is not None:
        lines.append(f"  rows: {report.rows}, valid: {report.valid_rows}, size: {report.size_bytes} bytes, "
                     f"format: {report.detected_format or 'unknown'}, revision: {report.revision}")
    for error in report.errors:
        at = f"row {error.row}" if error.row else "file"
        lines.append(f"  {at} {error.field}: {error.message}" if error.field else f"  {at}: {error.message}")
    if report.error_count and report.error_count > len(report.errors):
        lines.append(f"  ... {report.error_count - len(report.errors)} more")
    if report.token_stats is not None:
        s = report.token_stats
        lines.append(f"  tokens: min {s.min}, median {s.median}, p95 {s.p95}, max {s.max}, "
                     f"{s.over_max_percent}% over maxSeqLength")
    lines.extend(f"  preview: {p}" for p in report.preview)
    if report.message:
        lines.append(f"  {report.message}")
    return "\n".join(lines)


def load_config(path: Path) -> ValidatorConfig:
    """JSON (as the operator renders it) or YAML (as a person writes it)."""
    text = path.read_text(encoding="utf-8")
    try:
        return ValidatorConfig.model_validate_json(text)
    except ValidationError as error:
        if not any(e["type"] == "json_invalid" for e in error.errors()):
            raise
    return ValidatorConfig.model_validate(yaml.safe_load(text))


def _write_result(text: str, path: str) -> None:
    # Outside a Pod the default path does not exist; creating /dev files is not ours to do.
    if path == TERMINATION_LOG and not os.path.exists(path):
        return
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as error:
        print(f"warning: cannot write the report to {path}: {error}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubetune-trainer validate", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="ValidatorConfig file (JSON or YAML)")
    parser.add_argument("--result-path", help="where to write the JSON report (default: config.resultPath)")
    args = parser.parse_args(argv)
    token = os.environ.get(DATA_TOKEN_ENV) or os.environ.get(HF_TOKEN_ENV) or None
    name, result_path = "?", args.result_path or TERMINATION_LOG
    try:
        config = load_config(Path(args.config))
    except (OSError, yaml.YAMLError, ValidationError) as error:
        report = ValidationReport(outcome="Failed", reason=FailureReason.INVALID_CONFIG,
                                  message=_clip(f"cannot read the config {args.config}: {error}", 2048))
    else:
        name = f"{config.namespace}/{config.name}"
        result_path = args.result_path or config.result_path
        try:
            report = validate_dataset(config, token=token)
        except Exception as error:  # a bug must still leave a report behind
            report = ValidationReport(outcome="Failed", message=_clip(
                f"the validator crashed: {type(error).__name__}: {error}", 2048))
    report = fit_report(_redacted(report, token))
    text = report_json(report)
    print(redact(summary(report, name), [token]))
    print(text, flush=True)
    _write_result(text, result_path)
    return exit_code(report)
