"""kubetune-trainer preflight --config FILE [--result-path FILE]

Prints what was checked and found, then the PreflightReport JSON on the last line, and writes
that JSON (at most 4096 bytes) to the result path. Exit codes: 0 passed (warnings allowed),
1 failed on network trouble (a new attempt may pass), 2 failed (fix the setup).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from kubetune.api.contract import (
    DATA_TOKEN_ENV,
    HF_TOKEN_ENV,
    TERMINATION_LOG,
    TERMINATION_MESSAGE_LIMIT,
    ExitCode,
    FailureReason,
    PreflightIssue,
    PreflightReport,
)
from kubetune.api.redact import redact


def report_json(report: PreflightReport) -> str:
    return json.dumps(report.to_wire(), separators=(",", ":"), ensure_ascii=False)


def _size(report: PreflightReport) -> int:
    return len(report_json(report).encode("utf-8"))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shrink_steps(report: PreflightReport) -> list[dict[str, Any]]:
    """Ever smaller versions of the long parts: warnings' words first, errors' last."""
    def issues(error_chars: int, warning_chars: int | None) -> list[PreflightIssue]:
        kept = [i for i in report.issues if i.severity == "Error" or warning_chars is not None]
        return [i.model_copy(update={"message": _clip(i.message, error_chars if i.severity == "Error"
                                                      else warning_chars or 0)}) for i in kept]

    return [
        {"issues": issues(1024, 400)},
        {"issues": issues(600, 200)},
        {"datasets": [d.model_copy(update={"name": _clip(d.name, 120)}) for d in report.datasets]},
        {"issues": issues(300, None)},
        {"issues": issues(160, None)[:8]},
        {"datasets": report.datasets[:16]},
        {"issues": issues(120, None)[:4], "datasets": []},
    ]


def fit_report(report: PreflightReport, limit: int = TERMINATION_MESSAGE_LIMIT) -> PreflightReport:
    """The report, shrunk until its compact JSON fits in `limit` bytes."""
    fitted = report
    for update in _shrink_steps(report):
        if _size(fitted) <= limit:
            break
        fitted = fitted.model_copy(update=update)
    if _size(fitted) > limit:
        raise AssertionError("a PreflightReport cannot be shrunk below the termination-message limit")
    return fitted


def exit_code(report: PreflightReport) -> int:
    if report.outcome == "Passed":
        return ExitCode.OK
    return ExitCode.RETRYABLE if report.retryable else ExitCode.PERMANENT


def summary(report: PreflightReport, name: str) -> str:
    lines = [f"preflight of TuningJob {name}: {report.outcome} (checked: {', '.join(report.checked) or 'nothing'})"]
    if report.base_model_revision:
        lines.append(f"  base model revision: {report.base_model_revision}")
    lines.extend(f"  dataset {d.name}: revision {d.revision}" for d in report.datasets)
    if report.memory is not None:
        m = report.memory
        gpu = f" of {m.gpu_bytes / 2**30:.1f} GiB" if m.gpu_bytes is not None else ""
        lines.append(f"  GPU memory (rough estimate): {m.bytes_per_gpu / 2**30:.1f} GiB per GPU{gpu}")
    lines.extend(f"  {i.severity.lower()} ({i.reason}): {i.message}" for i in report.issues)
    return "\n".join(lines)


def _write_result(text: str, path: str) -> None:
    # Outside a Pod the default path does not exist; creating /dev files is not ours to do.
    if path == TERMINATION_LOG and not os.path.exists(path):
        return
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text, encoding="utf-8")
    except OSError as error:
        print(f"warning: cannot write the report to {path}: {error}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubetune-trainer preflight",
                                     description="Check token, base model, output repo, data and GPU memory on CPU.")
    parser.add_argument("--config", required=True, type=Path, help="TrainerConfig file (JSON or YAML)")
    parser.add_argument("--result-path", help="where to write the JSON report (default: config.resultPath)")
    args = parser.parse_args(argv)
    hf_token = os.environ.get(HF_TOKEN_ENV) or None
    data_token = os.environ.get(DATA_TOKEN_ENV) or None
    secrets = [hf_token, data_token]
    name, result_path = "?", args.result_path or TERMINATION_LOG
    from kubetune_trainer.cli import read_config
    from kubetune_trainer.errors import TrainerFailure

    try:
        config = read_config(args.config)
    except TrainerFailure as failure:
        report = _failed(failure.reason, failure.message)
    else:
        name = f"{config.namespace}/{config.name}"
        result_path = args.result_path or config.result_path
        try:
            from kubetune_trainer.hubenv import disable_xet_for, self_hosted_endpoints
            from kubetune_trainer.preflight.run import run_preflight

            disable_xet_for(self_hosted_endpoints(config))
            report = run_preflight(config, hf_token=hf_token, data_token=data_token)
        except Exception as error:  # a bug must still leave a report behind, and not pass
            report = _failed(FailureReason.TRAINING_FAILED,
                             f"the preflight crashed: {type(error).__name__}: {' '.join(str(error).split())}")
    report = fit_report(report.model_copy(update={"issues": [
        i.model_copy(update={"message": redact(i.message, secrets)}) for i in report.issues]}))
    text = report_json(report)
    print(redact(summary(report, name), secrets))
    print(text, flush=True)
    _write_result(text, result_path)
    return exit_code(report)


def _failed(reason: FailureReason, message: str) -> PreflightReport:
    return PreflightReport(outcome="Failed", retryable=False,
                           issues=[PreflightIssue(reason=reason, severity="Error", message=_clip(message, 1024))])
