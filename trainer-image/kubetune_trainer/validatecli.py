"""`kubetune-trainer validate`: check a dataset before any GPU is spent.

Validate data files directly (what a person does):

    kubetune-trainer validate -f train.jsonl                 # one file: JSONL, JSON, CSV, TSV, Parquet, .gz
    kubetune-trainer validate -f data/ --format messages     # every data file in a folder, as one dataset
    cat train.jsonl | kubetune-trainer validate -f -         # standard input (JSON, JSON Lines, Parquet, gzip)
    kubetune-trainer validate -f pairs.jsonl --column prompt=question --tokenizer Qwen/Qwen2.5-0.5B

or a config file (what the operator's validation Job runs; YAML or JSON, `-` for standard input):
either a Dataset manifest (kind: Dataset, as you would kubectl apply it; hf and url sources) or a
ValidatorConfig:

    apiVersion: kubetune.io/v1alpha1
    kind: ValidatorConfig
    contractVersion: "1.0"            # optional by hand; the operator writes its own
    name: support-chats               # the Dataset's name, for messages
    namespace: ml
    source:                           # exactly one of hf, url, configMap, pvc (as in Dataset.spec.source)
      pvc: {claimName: data, path: chats/train.jsonl}
    format: auto                      # auto, alpaca, messages, sharegpt, yandex, promptCompletion, text,
                                      # classification, preference
    columns: {}                       # your column names, e.g. {instruction: question, output: answer}
    labels: []                        # classification: the allowed labels
    validation: {tokenizer: null, maxSeqLength: 2048, maxErrors: 20}
    mounts:                           # where the volumes are on this machine
      pvcs: {data: /mnt/data}
    resultPath: /dev/termination-log  # where the JSON report goes

(examples/validator-config.yaml is a complete one.) The report lists every defect with its row
number and field, and the fix. With --config it ends with the report as one JSON line, which also
goes to resultPath (at most 4096 bytes); with -f add `-o json` for it. Exit codes: 0 ready,
1 the source could not be reached (retry), 2 invalid data or config.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kubetune.api.contract import (
    CONTRACT_VERSION,
    DATA_TOKEN_ENV,
    HF_TOKEN_ENV,
    TERMINATION_LOG,
    ExitCode,
    FailureReason,
    Mounts,
    ValidationReport,
    ValidatorConfig,
)
from kubetune.api.dataset import Dataset, DatasetFormat
from kubetune.api.errors import explain_validation_error
from kubetune.api.redact import redact
from kubetune_trainer.config import check_contract_version, drop_unknown_fields
from kubetune_trainer.data.validate import validate_dataset
from kubetune_trainer.errors import TrainerFailure
from kubetune_trainer.termination import fit_termination_message, termination_json, write_termination_message

STDIN = "-"
_LOCAL_CLAIM = "local"  # the pretend volume a -f path is read through


class ConfigProblem(Exception):
    """The config cannot be used; the message names the file, the field and the fix."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    token = os.environ.get(DATA_TOKEN_ENV) or os.environ.get(HF_TOKEN_ENV) or None
    given = args.config if args.config is not None else args.filename
    name, result_path = "stdin" if given == STDIN else given, args.result_path or TERMINATION_LOG
    as_json = args.output == "json" or args.config is not None  # the operator reads the last line
    with tempfile.TemporaryDirectory(prefix="kubetune-stdin-") as scratch:
        try:
            if args.config is not None:
                config = load_config(args.config, log=lambda line: print(redact(line, [token])))
            else:
                config = config_for_path(args.filename, args, Path(scratch))
        except ConfigProblem as problem:
            report = ValidationReport(outcome="Failed", reason=FailureReason.INVALID_CONFIG,
                                      message=_clip(str(problem), 2048))
        else:
            name = config.name if args.config is None else f"{config.namespace}/{config.name}"
            result_path = args.result_path or config.result_path
            try:
                report = validate_dataset(config, token=token)
            except Exception as error:  # a bug must still leave a report behind, not a traceback
                report = ValidationReport(outcome="Failed", message=_clip(
                    f"the validator crashed: {type(error).__name__}: {error}", 2048))
    report = fit_termination_message(report, [token])
    text = termination_json(report)
    print(redact(summary(report, name), [token]))
    if as_json:
        print(text, flush=True)
    write_termination_message(text, result_path)
    return exit_code(report)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubetune-trainer validate", description=__doc__.split("\n\n", 1)[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("-f", "--filename", metavar="PATH",
                      help="a data file, a folder of data files, or - for standard input")
    what.add_argument("--config", metavar="FILE",
                      help="a ValidatorConfig or a Dataset manifest (YAML or JSON; - for standard input)")
    parser.add_argument("--format", default="auto", choices=[f.value for f in DatasetFormat],
                        help="row format of -f data (default: auto, detected from the first rows)")
    parser.add_argument("--column", action="append", default=[], metavar="FIELD=COLUMN",
                        help="your column for a format's field, e.g. instruction=question (repeatable)")
    parser.add_argument("--labels", help="classification: the allowed labels, comma-separated")
    parser.add_argument("--tokenizer", help="measure row lengths with this tokenizer (a Hub repo or a folder)")
    parser.add_argument("--max-seq-length", type=int, default=2048, help="rows longer than this many tokens are "
                                                                         "counted as too long (default 2048)")
    parser.add_argument("--max-errors", type=int, default=20, help="defects listed, 1-100 (default 20)")
    parser.add_argument("-o", "--output", choices=["text", "json"], default="text",
                        help="json: end with the report as one JSON line (always so with --config)")
    parser.add_argument("--result-path", help="also write the JSON report here (default: config.resultPath)")
    return parser


# --- configs ------------------------------------------------------------------------------------

def load_config(where: str, log: Callable[[str], None] = print) -> ValidatorConfig:
    """A ValidatorConfig from a file (or stdin): JSON as the operator renders it, YAML as a person writes it,
    or a Dataset manifest.

    A config that names another contract version than this trainer's was rendered by an operator
    of another version: another major is refused, fields a newer minor added are dropped (with a
    line in the log), as config.load_config does for the trainer. A config without a version was
    written by a person for this trainer: it is read strictly, so a misspelt field is an error.
    """
    label = "standard input" if where == STDIN else where
    try:
        text = sys.stdin.read() if where == STDIN else Path(where).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigProblem(f"cannot read the config {label}: {error.strerror or error}") from None
    try:
        data = yaml.safe_load(text)  # JSON is YAML
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "not YAML or JSON"
        raise ConfigProblem(f"the config {label} is not valid YAML{at}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigProblem(f"the config {label} must be a mapping (kind: ValidatorConfig or kind: Dataset); see "
                            "kubetune-trainer validate --help")
    if data.get("kind") == "Dataset":
        return _from_dataset(data, label)
    version = data.get("contractVersion")
    if version is not None and version != CONTRACT_VERSION:
        try:
            check_contract_version(version)
        except TrainerFailure as failure:
            raise ConfigProblem(f"the config {label}: {failure.message}") from None
        data, ignored = drop_unknown_fields(data, ValidatorConfig)
        if ignored:
            log(f"config: ignoring {len(ignored)} field(s) this validator (contract {CONTRACT_VERSION}) does not "
                f"know, from a contract {version} config: {', '.join(ignored)}")
    try:
        return ValidatorConfig.model_validate(data)
    except ValidationError as error:
        lines = explain_validation_error(error, ValidatorConfig)
        raise ConfigProblem(f"the config {label} is not a valid ValidatorConfig: " + "; ".join(lines)
                            + " (kubetune-trainer validate --help shows one)") from None


def _from_dataset(data: dict[str, Any], label: str) -> ValidatorConfig:
    try:
        dataset = Dataset.model_validate(data)
    except ValidationError as error:
        lines = explain_validation_error(error, Dataset)
        raise ConfigProblem(f"the Dataset in {label} is not valid: " + "; ".join(lines)) from None
    spec = dataset.spec
    if spec.source.config_map is not None or spec.source.pvc is not None:
        raise ConfigProblem(f"the Dataset in {label} reads a {spec.source.kind} source, which lives in the cluster: "
                            "validate the file itself with -f PATH")
    return ValidatorConfig(name=dataset.metadata.name, namespace=dataset.metadata.namespace, source=spec.source,
                           format=spec.format, columns=spec.columns, labels=spec.labels, validation=spec.validation)


def config_for_path(path: str, args: argparse.Namespace, scratch: Path) -> ValidatorConfig:
    """A ValidatorConfig reading a file or folder (or stdin, copied to `scratch`) through a pretend volume."""
    if path == STDIN:
        local = scratch / "stdin"
        with local.open("wb") as copy:
            shutil.copyfileobj(sys.stdin.buffer, copy)
        name = "stdin"
    else:
        local = Path(path).expanduser().resolve()
        if not local.exists():
            raise ConfigProblem(f"-f {path}: no such file or folder")
        name = Path(path).name or str(local)
    mount, inner = (local, ".") if local.is_dir() else (local.parent, local.name)
    raw = {
        "name": name, "format": args.format, "source": {"pvc": {"claimName": _LOCAL_CLAIM, "path": inner}},
        "columns": _columns(args.column), "labels": _labels(args.labels),
        "validation": {"tokenizer": args.tokenizer, "maxSeqLength": args.max_seq_length,
                       "maxErrors": args.max_errors},
        "mounts": Mounts(pvcs={_LOCAL_CLAIM: str(mount)}).to_wire(),
    }
    try:
        return ValidatorConfig.model_validate(raw)
    except ValidationError as error:
        options = {"columns": "--column", "validation.maxErrors": "--max-errors",
                   "validation.maxSeqLength": "--max-seq-length", "labels": "--labels"}
        lines = []
        for line in explain_validation_error(error, ValidatorConfig):
            field = line.split(":", 1)[0]
            option = next((o for f, o in options.items() if field.startswith(f)), None)
            lines.append(f"{option} ({field}){line[len(field):]}" if option else line)
        raise ConfigProblem("; ".join(lines)) from None


def _columns(pairs: list[str]) -> dict[str, str]:
    columns: dict[str, str] = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        if not sep or not field or not column:
            raise ConfigProblem(f"--column {pair!r}: write FIELD=COLUMN, e.g. --column instruction=question")
        columns[field] = column
    return columns


def _labels(text: str | None) -> list[str]:
    return [label.strip() for label in (text or "").split(",") if label.strip()]


# --- output -------------------------------------------------------------------------------------

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


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
