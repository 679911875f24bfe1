"""The train command's run, stage by stage: data and training, the final folder, publishing.

Every start of a run opens the same run folder (runfolder.py: <workDir>/runs/<uid>-<runHash>/):
one that finds a finished model in final/ skips straight to publishing (a re-run after a failed
push must not train again); one that finds checkpoints resumes from the newest complete one.
In a distributed run every rank trains; rank 0 alone opens the run folder's record, writes
final/ and publishes, and hands its result to the others (distributed.py).
"""

from __future__ import annotations

import shutil

from kubetune.api.contract import TrainerConfig, TrainerResult
from kubetune.api.progress import Stage
from kubetune_trainer import distributed
from kubetune_trainer.events import Reporter
from kubetune_trainer.runfolder import RunFolder, open_run_folder
from kubetune_trainer.stop import StopRequest
from kubetune_trainer.workdir import read_finished


def run_pipeline(config: TrainerConfig, reporter: Reporter, stop: StopRequest, hf_token: str | None,
                 data_token: str | None) -> TrainerResult:
    # The stages import torch and transformers: only once the config is known to be good.
    from kubetune_trainer.output.finalize import save_final
    from kubetune_trainer.output.publish import publish_step
    from kubetune_trainer.training.device import check_method_supported
    from kubetune_trainer.training.train import Tokens, train_model

    distributed.start()
    # Rank 0 counts the attempt in the run folder; every rank works in that folder (on its own
    # node's volume, if the nodes do not share one).
    run: RunFolder = distributed.decide(lambda: open_run_folder(config))
    work = run.work
    work.root.mkdir(parents=True, exist_ok=True)
    reporter.log(f"run folder {run.where(work.root)} (attempt {run.attempt})")
    for earlier in run.earlier_runs:
        reporter.log(f"not reusing {earlier}: it was made from another spec of this TuningJob; this run starts "
                     f"clean in {run.identity.folder_name}")
    # Rank 0's folder decides for every rank: a follower's own volume may lack final/.
    finished = distributed.decide(lambda: read_finished(work))
    if finished is not None:
        reporter.stage(Stage.LOADING, "a finished model is in final/: skipping training")
        reporter.log(f"found a finished model in {run.where(work.final)} (steps {finished.metrics.steps}): "
                     "not training again")
    else:
        check_method_supported(config.spec.method.type)
        trained = train_model(config, work, reporter, stop, Tokens(hf=hf_token, data=data_token),
                              attempt=run.attempt)
        if trained is not None:  # rank 0
            reporter.stage(Stage.SAVING, "writing the final model")
            finished = save_final(config, work, reporter, model=trained.model, tokenizer=trained.tokenizer,
                                  resolved=trained.resolved, metrics=trained.metrics, labels=trained.labels,
                                  plan=trained.plan, samples=trained.samples, state_dict=trained.state_dict)
            # final/ now stands for the run (a new attempt only publishes it); checkpoints with optimizer
            # state are the largest thing on the volume and no longer needed.
            shutil.rmtree(work.checkpoints, ignore_errors=True)
            reporter.log("checkpoints removed: the finished model is in final/")
    result = None
    if finished is not None and distributed.ranks().is_main:
        # Rank 0 alone publishes: every rank knows of a finished model found in final/.
        result = publish_step(config, run, finished, reporter, hf_token)
    # Every rank ends with rank 0's outcome (and exit code): a failed push fails every Pod alike,
    # so the retry restarts all of them rather than a leader waiting for followers that are gone.
    outcome = distributed.broadcast(result)
    assert outcome is not None
    if not distributed.ranks().is_main and outcome.model is not None:
        # final/ exists: a node with a volume of its own drops its copy of the checkpoints too.
        shutil.rmtree(work.checkpoints, ignore_errors=True)
    return outcome
