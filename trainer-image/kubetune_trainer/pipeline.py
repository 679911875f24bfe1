"""The train command's run, stage by stage: data and training, the final folder, publishing.

Every start of a run opens the same run folder (runfolder.py: <workDir>/runs/<uid>-<runHash>/):
one that finds a finished model in final/ skips straight to publishing (a re-run after a failed
push must not train again); one that finds checkpoints resumes from the newest complete one.
"""

from __future__ import annotations

import shutil

from kubetune.api.contract import TrainerConfig, TrainerResult
from kubetune.api.progress import Stage
from kubetune_trainer.events import Reporter
from kubetune_trainer.runfolder import open_run_folder
from kubetune_trainer.stop import StopRequest
from kubetune_trainer.workdir import read_finished


def run_pipeline(config: TrainerConfig, reporter: Reporter, stop: StopRequest, hf_token: str | None,
                 data_token: str | None) -> TrainerResult:
    # The stages import torch and transformers: only once the config is known to be good.
    from kubetune_trainer.output.finalize import save_final
    from kubetune_trainer.output.publish import publish_step
    from kubetune_trainer.training.device import check_method_supported
    from kubetune_trainer.training.train import Tokens, train_model

    run = open_run_folder(config)
    work = run.work
    reporter.log(f"run folder {run.where(work.root)} (attempt {run.attempt})")
    for earlier in run.earlier_runs:
        reporter.log(f"not reusing {earlier}: it was made from another spec of this TuningJob; this run starts "
                     f"clean in {run.identity.folder_name}")
    finished = read_finished(work)
    if finished is not None:
        reporter.stage(Stage.LOADING, "a finished model is in final/: skipping training")
        reporter.log(f"found a finished model in {run.where(work.final)} (steps {finished.metrics.steps}): "
                     "not training again")
    else:
        check_method_supported(config.spec.method.type)
        trained = train_model(config, work, reporter, stop, Tokens(hf=hf_token, data=data_token),
                              attempt=run.attempt)
        reporter.stage(Stage.SAVING, "writing the final model")
        finished = save_final(config, work, reporter, model=trained.model, tokenizer=trained.tokenizer,
                              resolved=trained.resolved, metrics=trained.metrics, labels=trained.labels,
                              plan=trained.plan, samples=trained.samples)
        # final/ now stands for the run (a new attempt only publishes it); checkpoints with optimizer
        # state are the largest thing on the volume and no longer needed.
        shutil.rmtree(work.checkpoints, ignore_errors=True)
        reporter.log("checkpoints removed: the finished model is in final/")
    return publish_step(config, run, finished, reporter, hf_token)
