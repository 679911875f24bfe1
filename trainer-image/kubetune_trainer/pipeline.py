"""The train command's run, stage by stage: data and training, the final folder, publishing.

A run that finds a finished model in <work_dir>/final skips straight to publishing: a
re-run after a failed push must not train again. In a distributed run every rank trains;
rank 0 alone writes final/ and publishes, and hands its result to the others
(kubetune_trainer/distributed.py).
"""

from __future__ import annotations

from pathlib import Path

from kubetune.api.contract import TrainerConfig, TrainerResult
from kubetune.api.progress import Stage
from kubetune_trainer import distributed
from kubetune_trainer.events import Reporter
from kubetune_trainer.stop import StopRequest
from kubetune_trainer.workdir import WorkDir, read_finished


def run_pipeline(config: TrainerConfig, reporter: Reporter, stop: StopRequest, hf_token: str | None,
                 data_token: str | None) -> TrainerResult:
    # The stages import torch and transformers: only once the config is known to be good.
    from kubetune_trainer.output.finalize import save_final
    from kubetune_trainer.output.publish import publish_step
    from kubetune_trainer.training.device import check_method_supported
    from kubetune_trainer.training.train import Tokens, train_model

    distributed.start()
    work = WorkDir(Path(config.work_dir))
    work.root.mkdir(parents=True, exist_ok=True)
    # Rank 0's work folder decides for every rank: a follower's own volume may lack final/.
    finished = distributed.decide(lambda: read_finished(work))
    if finished is not None:
        reporter.stage(Stage.LOADING, "a finished model is in final/: skipping training")
        reporter.log(f"found a finished model in {work.final} (steps {finished.metrics.steps}): not training again")
    else:
        check_method_supported(config.spec.method.type)
        trained = train_model(config, work, reporter, stop, Tokens(hf=hf_token, data=data_token))
        if trained is not None:  # rank 0
            reporter.stage(Stage.SAVING, "writing the final model")
            finished = save_final(config, work, reporter, model=trained.model, tokenizer=trained.tokenizer,
                                  resolved=trained.resolved, metrics=trained.metrics, labels=trained.labels,
                                  plan=trained.plan, state_dict=trained.state_dict)
    result = publish_step(config, work, finished, reporter, hf_token) if finished is not None else None
    # Every rank ends with rank 0's outcome (and exit code): a failed push fails every Pod alike,
    # so the retry restarts all of them rather than a leader waiting for followers that are gone.
    outcome = distributed.broadcast(result)
    assert outcome is not None
    return outcome
