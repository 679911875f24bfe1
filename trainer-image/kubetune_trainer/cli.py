"""kubetune-trainer: fine-tune a model from a TrainerConfig, or validate a dataset.

    kubetune-trainer train --config /etc/kubetune/config.json [--result-path FILE]
    kubetune-trainer validate --config /etc/kubetune/config.json [--result-path FILE]

`train` reads a TrainerConfig (JSON or YAML: the TuningJob spec with every dataset
resolved to an inline source, the work folder, the volume mounts), trains, evaluates the
base and tuned models, writes <work_dir>/final and pushes it when spec.output.repo is set.
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

from kubetune.api.contract import (
    DATA_TOKEN_ENV,
    HF_TOKEN_ENV,
    TERMINATION_LOG,
    FailureReason,
    TrainerConfig,
    TrainerResult,
)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="kubetune-trainer", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["train", "validate"], help="train a model or validate a dataset")
    if not args or args[0] not in ("train", "validate"):
        parser.parse_args(args)  # prints usage and exits
    if args[0] == "validate":
        from kubetune_trainer.validate import main as validate_main

        return validate_main(args[1:])
    return train_main(args[1:])


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubetune-trainer train",
                                     description="Fine-tune a model as a TrainerConfig describes.")
    parser.add_argument("--config", required=True, type=Path,
                        help="TrainerConfig file (JSON or YAML), as the operator renders it into a ConfigMap")
    parser.add_argument("--result-path",
                        help=f"where to write the TrainerResult JSON (default: config.resultPath, {TERMINATION_LOG})")
    return parser


def train_main(argv: list[str]) -> int:
    from kubetune_trainer import distributed
    from kubetune_trainer.callbacks import StopRequest
    from kubetune_trainer.errors import TrainerFailure
    from kubetune_trainer.events import Reporter
    from kubetune_trainer.launcher import rank_result_path
    from kubetune_trainer.result import exit_code_of, fit_result, result_json, write_result

    args = _train_parser().parse_args(argv)
    hf_token = os.environ.get(HF_TOKEN_ENV) or None
    data_token = os.environ.get(DATA_TOKEN_ENV) or None
    me = distributed.ranks()
    reporter = Reporter([hf_token, data_token], quiet=not me.is_main)  # rank 0 speaks for the run
    reporter.install_log_redaction()
    stop = StopRequest()
    stop.install()
    result_path = args.result_path or TERMINATION_LOG
    try:
        config = _read_config(args.config)
        result_path = args.result_path or config.result_path
        if config.launch.world_size > 1 and not distributed.in_worker():
            stop.uninstall()  # the launcher forwards signals to the processes it starts
            from kubetune_trainer.launcher import launch

            return launch(config, args.config, result_path, reporter)
        result_path = rank_result_path() or result_path
        _prepare_hub_client(config, reporter)
        result = _run(config, reporter, stop, hf_token, data_token)
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
    result = fit_result(result, reporter.secrets)
    text = result_json(result)
    reporter.log(_summary(result))
    reporter.log(text)
    if reporter.quiet and result.status == "Failed":
        # Rank 0 prints the run's outcome; another rank's line says which process it was.
        print(reporter.clean(f"[{me.describe()}] {_summary(result)}"), file=sys.stderr, flush=True)
    write_result(text, result_path)
    return exit_code_of(result)


def _read_config(path: Path) -> TrainerConfig:
    """The config, or an InvalidConfig failure (an OSError later in the run is not the config's fault)."""
    import yaml
    from pydantic import ValidationError

    from kubetune_trainer.errors import TrainerFailure

    try:
        return TrainerConfig.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValidationError) as error:
        raise TrainerFailure(FailureReason.INVALID_CONFIG,
                             f"cannot read the config {path}: {' '.join(str(error).split())}") from None


def _run(config: TrainerConfig, reporter: object, stop: object, hf_token: str | None,
         data_token: str | None) -> TrainerResult:
    from kubetune.api.progress import Stage
    from kubetune_trainer import distributed
    from kubetune_trainer.callbacks import StopRequest
    from kubetune_trainer.checkpoints import read_finished
    from kubetune_trainer.device import check_method_supported
    from kubetune_trainer.events import Reporter
    from kubetune_trainer.publishing import publish_step
    from kubetune_trainer.train import Tokens, train_model, work_dir_of

    assert isinstance(reporter, Reporter) and isinstance(stop, StopRequest)
    distributed.start()
    work = work_dir_of(config)
    # Rank 0's work folder decides for every rank: a follower's own volume may lack final/.
    finished = distributed.decide(lambda: read_finished(work))
    if finished is not None:
        reporter.stage(Stage.LOADING, "a finished model is in final/: skipping training")
        reporter.log(f"found a finished model in {work.final} (steps {finished.metrics.steps}): not training again")
    else:
        check_method_supported(config.spec.method.type)
        finished = train_model(config, work, reporter, stop, Tokens(hf=hf_token, data=data_token))
    result = publish_step(config, work, finished, reporter, hf_token) if finished is not None else None
    # Every rank ends with rank 0's outcome (and exit code): a failed push fails every Pod alike,
    # so the retry restarts all of them rather than a leader waiting for followers that are gone.
    outcome = distributed.broadcast(result)
    assert outcome is not None
    return outcome


def _prepare_hub_client(config: TrainerConfig, reporter: object) -> None:
    from urllib.parse import urlsplit

    from kubetune_trainer.events import Reporter
    from kubetune_trainer.hubenv import disable_xet_for, self_hosted_endpoints

    assert isinstance(reporter, Reporter)
    endpoints = self_hosted_endpoints(config)
    if disable_xet_for(endpoints):
        hosts = sorted({urlsplit(e).hostname or "?" for e in endpoints})
        reporter.log(f"self-hosted Hub ({', '.join(hosts)}): Xet transfers off, plain HTTP and LFS")


def _failed(failure: object) -> TrainerResult:
    from kubetune_trainer.errors import TrainerFailure

    assert isinstance(failure, TrainerFailure)
    return TrainerResult(status="Failed", reason=failure.reason, message=failure.message[:2048],
                         retryable=failure.retryable)


def _crash(error: Exception) -> object:
    from kubetune_trainer.distributed import is_peer_failure
    from kubetune_trainer.errors import TrainerFailure

    text = " ".join(str(error).split())
    if is_peer_failure(error):
        return TrainerFailure(FailureReason.TRAINING_FAILED, "another process of this distributed run failed or "
                              f"could not be reached (see its log): {text}", retryable=True)
    if type(error).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError outside the training loop
        return TrainerFailure(FailureReason.OUT_OF_MEMORY, f"the GPU ran out of memory: {text}")
    return TrainerFailure(FailureReason.TRAINING_FAILED, f"{type(error).__name__}: {text}", retryable=False)


def _summary(result: TrainerResult) -> str:
    if result.status == "Succeeded":
        where = result.model.repo or result.model.path if result.model else "?"
        return f"succeeded: {where}"
    return f"failed ({result.reason}): {result.message}"




if __name__ == "__main__":
    sys.exit(main())
