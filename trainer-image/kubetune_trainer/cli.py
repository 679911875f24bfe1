"""kubetune-trainer: fine-tune a model from a TrainerConfig, or validate a dataset.

    kubetune-trainer train --config /etc/kubetune/config.json [--result-path FILE]
    kubetune-trainer validate --config /etc/kubetune/config.json [--result-path FILE]
    kubetune-trainer preflight --config /etc/kubetune/config.json [--result-path FILE]
    kubetune-trainer validate -f DATA_FILE_OR_FOLDER [--format FORMAT]   (see validate --help)
    kubetune-trainer train --config FILE --check    # refuse what a run would refuse at start

`train` reads a TrainerConfig (JSON or YAML: the TuningJob spec with every dataset
resolved to an inline source, the work folder, the volume mounts), trains, evaluates the
base and tuned models, writes final/ in the run's folder (<workDir>/runs/<uid>-<runHash>/; a
new start of the same run resumes from its newest checkpoint, or only publishes a finished
model), delivers it to output.pvc and pushes it when spec.output.repo is set.
It prints one `##kubetune {...}` progress line per logging step and a stage line per stage
(kubetune.api.progress), and writes a TrainerResult JSON (<= 4096 bytes) to the result path
(default /dev/termination-log). The Hugging Face token comes from HF_TOKEN, a data token
from KUBETUNE_DATA_TOKEN; neither is ever printed. Exit codes: 0 success, 1 retryable
failure, 2 permanent failure, 130 interrupted (a checkpoint was saved; a new run resumes).

Run it locally on CPU with a scratch model:

    kubetune-trainer train --config examples/trainer-config.yaml --result-path /tmp/result.json

Heavy libraries (torch, transformers, peft) are imported inside the commands, so `--help`
answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from kubetune.api.contract import (
    DATA_TOKEN_ENV,
    HF_TOKEN_ENV,
    PEER_FAILURE,
    TERMINATION_LOG,
    ExitCode,
    FailureReason,
    TrainerConfig,
    TrainerResult,
)
from kubetune_trainer import distributed
from kubetune_trainer.config import load_config
from kubetune_trainer.errors import TrainerFailure
from kubetune_trainer.events import Reporter
from kubetune_trainer.hubenv import disable_xet_for, self_hosted_endpoints
from kubetune_trainer.launcher import launch, rank_result_path
from kubetune_trainer.pipeline import run_pipeline
from kubetune_trainer.stop import StopRequest
from kubetune_trainer.termination import (
    exit_code_of,
    fit_termination_message,
    summary_line,
    termination_json,
    write_termination_message,
)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="kubetune-trainer", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["train", "validate", "preflight"],
                        help="train a model, validate a dataset, or check a run's setup before it uses a GPU")
    if not args or args[0] not in ("train", "validate", "preflight"):
        parser.parse_args(args)  # prints usage and exits
    if args[0] == "validate":
        from kubetune_trainer.validatecli import main as validate_main

        return validate_main(args[1:])
    if args[0] == "preflight":
        from kubetune_trainer.preflight.cli import main as preflight_main

        return preflight_main(args[1:])
    return train_main(args[1:])


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubetune-trainer train",
                                     description="Fine-tune a model as a TrainerConfig describes.")
    parser.add_argument("--config", required=True, type=Path,
                        help="TrainerConfig file (JSON or YAML), as the operator renders it into a ConfigMap")
    parser.add_argument("--result-path",
                        help=f"where to write the TrainerResult JSON (default: config.resultPath, {TERMINATION_LOG})")
    parser.add_argument("--check", action="store_true",
                        help="only check the config and that this machine can run its method, as a run does first; "
                             "load and train nothing, and write a result only on failure (kubetune run --dry-run)")
    return parser


def train_main(argv: list[str]) -> int:
    args = _train_parser().parse_args(argv)
    if args.check:
        return _check_main(args)
    hf_token = os.environ.get(HF_TOKEN_ENV) or None
    data_token = os.environ.get(DATA_TOKEN_ENV) or None
    me = distributed.ranks()
    reporter = Reporter([hf_token, data_token], quiet=not me.is_main)  # rank 0 speaks for the run
    reporter.install_log_redaction()
    stop = StopRequest()
    stop.install()
    result_path = args.result_path or TERMINATION_LOG
    try:
        config = load_config(args.config, TrainerConfig, log=reporter.log)
        result_path = args.result_path or config.result_path
        if config.launch.world_size > 1 and not distributed.in_worker():
            stop.uninstall()  # the launcher passes signals on to the processes it starts
            return launch(config, args.config, result_path, reporter)
        result_path = rank_result_path() or result_path
        _prepare_hub_client(config, reporter)
        result = run_pipeline(config, reporter, stop, hf_token, data_token)
    except TrainerFailure as failure:
        result = _failed(failure)
    except KeyboardInterrupt:
        result = _failed(TrainerFailure(FailureReason.INTERRUPTED,
                                        f"stopped by {stop.requested or 'SIGINT'} before training started"))
    except Exception as error:  # a crash must still leave a result behind
        result = _failed(_crash(error))
    finally:
        stop.uninstall()
    if result.status == "Succeeded":
        distributed.stop()  # after a failure, peers may be stuck in a collective: leave it to the exit
    result = fit_termination_message(result, reporter.secrets)
    text = termination_json(result)
    reporter.log(summary_line(result))
    reporter.log(text)
    if reporter.quiet and result.status == "Failed":
        # Rank 0 prints the run's outcome; another rank's line says which process it was.
        print(reporter.clean(f"[{me.describe()}] {summary_line(result)}"), file=sys.stderr, flush=True)
    write_termination_message(text, result_path)
    return exit_code_of(result)


def _check_main(args: argparse.Namespace) -> int:
    """`train --check`: what a run refuses before it loads anything; torch only for QLoRA's CUDA check."""
    from kubetune_trainer.training.device import check_method_supported

    reporter = Reporter([os.environ.get(HF_TOKEN_ENV) or None, os.environ.get(DATA_TOKEN_ENV) or None])
    result_path = args.result_path or TERMINATION_LOG
    try:
        config = load_config(args.config, TrainerConfig, log=reporter.log)
        result_path = args.result_path or config.result_path
        check_method_supported(config.spec.method.type)
    except TrainerFailure as failure:
        result = fit_termination_message(_failed(failure), reporter.secrets)
        reporter.log(summary_line(result))
        write_termination_message(termination_json(result), result_path)
        return exit_code_of(result)
    reporter.log(f"check passed: this machine can run {config.spec.method.type.value}")
    return ExitCode.OK


def _prepare_hub_client(config: TrainerConfig, reporter: Reporter) -> None:
    endpoints = self_hosted_endpoints(config)
    if disable_xet_for(endpoints):
        hosts = sorted({urlsplit(e).hostname or "?" for e in endpoints})
        reporter.log(f"self-hosted Hub ({', '.join(hosts)}): Xet transfers off, plain HTTP and LFS")


def _failed(failure: TrainerFailure) -> TrainerResult:
    return TrainerResult(status="Failed", reason=failure.reason, message=failure.message[:2048],
                         retryable=failure.retryable)


def _crash(error: Exception) -> TrainerFailure:
    text = " ".join(str(error).split())
    if distributed.is_peer_failure(error):
        return TrainerFailure(FailureReason.TRAINING_FAILED, f"{PEER_FAILURE} (see its log): {text}",
                              retryable=True)
    if type(error).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError outside the training loop
        return TrainerFailure(FailureReason.OUT_OF_MEMORY, f"the GPU ran out of memory: {text}")
    return TrainerFailure(FailureReason.TRAINING_FAILED, f"{type(error).__name__}: {text}", retryable=False)


if __name__ == "__main__":
    sys.exit(main())
