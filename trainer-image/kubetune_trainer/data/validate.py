"""Dataset validation: read every row of a Dataset once and report what was found.

The command line (validatecli.py) prints the report and writes it to the termination-message
path, where it must fit in 4096 bytes: termination.py shrinks it (shorter texts, fewer
errors) until it does, so the JSON is always whole.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetune.api.contract import (
    FailureReason,
    ValidationReport,
    ValidatorConfig,
)
from kubetune.api.dataset import DatasetFormat, RowError
from kubetune_trainer.data.examples import ExampleStream
from kubetune_trainer.data.formats import ClassificationExample, RowDefect, preview_line
from kubetune_trainer.data.sources import OpenedSource, SourceError, open_source
from kubetune_trainer.data.tokenstats import TokenMeter, load_tokenizer
from kubetune_trainer.termination import (
    redact_message,
)

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
            return redact_message(_validate_rows(config, opened, token), [token])
        except SourceError as error:
            return ValidationReport(outcome="Failed", reason=error.reason, message=_clip(error.message, 2048))


def _validate_rows(config: ValidatorConfig, opened: OpenedSource, token: str | None) -> ValidationReport:
    tally = _Tally(max_errors=config.validation.max_errors)
    examples = ExampleStream(opened, config.format, config.columns, labels=config.labels)
    if examples.format is None:
        tally.defect(0, examples.undetected or RowDefect("", "cannot tell the format"))
        tally.rows = examples.count_rest()
        return _report(config, opened, tally, None, None, note=None)
    meter, note = _token_meter(config, token)
    for number, example in examples:
        if number == 0:  # the file as a whole
            tally.defect(0, example if isinstance(example, RowDefect) else RowDefect("", "unreadable"))
            continue
        tally.rows += 1
        if isinstance(example, RowDefect):
            tally.defect(number, example)
            continue
        tally.valid_rows += 1
        if len(tally.preview) < PREVIEW_ROWS:
            tally.preview.append(preview_line(example, PREVIEW_CHARS))
        if isinstance(example, ClassificationExample) and len(tally.labels) < _MAX_LABELS:
            tally.labels.update(dict.fromkeys(example.labels))
        if meter is not None:
            meter.add(example)
    stats = meter.stats() if meter is not None else None
    return _report(config, opened, tally, examples.format, stats, note)


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
