"""kubetune-trainer preflight --config FILE [--result-path FILE]

Prints what was checked and found, then the PreflightReport JSON on the last line, and writes
that JSON (at most 4096 bytes) to the result path. Exit codes: 0 passed (warnings allowed),
1 failed on network trouble (a new attempt may pass), 2 failed (fix the setup).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from kubetune.api.contract import (
    DATA_TOKEN_ENV,
    HF_TOKEN_ENV,
    TERMINATION_LOG,
    ExitCode,
    FailureReason,
    PreflightIssue,
    PreflightReport,
    TrainerConfig,
)
from kubetune.api.redact import redact
from kubetune_trainer.config import load_config
from kubetune_trainer.errors import TrainerFailure
from kubetune_trainer.hubenv import disable_xet_for, self_hosted_endpoints
from kubetune_trainer.preflight.run import run_preflight
from kubetune_trainer.termination import fit_termination_message, termination_json, write_termination_message


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
        gpu = f" of {m.gpu_bytes / 2**30:.1f} GiB" if m.gpu_bytes is not None and m.fits is not None else ""
        lines.append(f"  GPU memory (rough estimate): {m.bytes_per_gpu / 2**30:.1f} GiB per GPU{gpu}")
    lines.extend(f"  {i.severity.lower()} ({i.reason}): {i.message}" for i in report.issues)
    return "\n".join(lines)


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
    try:
        config = load_config(args.config, TrainerConfig, log=lambda line: print(redact(line, secrets)))
    except TrainerFailure as failure:
        report = _failed(failure.reason, failure.message)
    else:
        name = f"{config.namespace}/{config.name}"
        result_path = args.result_path or config.result_path
        try:
            disable_xet_for(self_hosted_endpoints(config))
            report = run_preflight(config, hf_token=hf_token, data_token=data_token)
        except Exception as error:  # a bug must still leave a report behind, and not pass
            report = _failed(FailureReason.TRAINING_FAILED,
                             f"the preflight crashed: {type(error).__name__}: {' '.join(str(error).split())}")
    report = fit_termination_message(report, secrets)
    text = termination_json(report)
    print(redact(summary(report, name), secrets))
    print(text, flush=True)
    write_termination_message(text, result_path)
    return exit_code(report)


def _failed(reason: FailureReason, message: str) -> PreflightReport:
    text = message if len(message) <= 1024 else message[:1023] + "…"
    return PreflightReport(outcome="Failed", retryable=False,
                           issues=[PreflightIssue(reason=reason, severity="Error", message=text)])
