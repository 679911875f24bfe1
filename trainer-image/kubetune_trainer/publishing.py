"""The publishing step: deliver final/ (and merged/) to output.pvc, push them to the Hub.

The adapter (or full model) goes to the repo root in one commit; a merged model follows in
a second commit under merged/ of the same repo, so one repo holds both and the result's
revision (the last commit) has everything. A failed push leaves the weights in the run folder
on the work volume and says where (pvc:CLAIM/PATH): a new attempt of the Job opens the same
run folder, finds the finished model and only pushes.
"""

from __future__ import annotations

import os

from kubetune.api.contract import FailureReason, TrainerConfig, TrainerResult
from kubetune.api.progress import Stage
from kubetune.api.tuningjob import ModelResult
from kubetune_trainer.checkpoints import FINISHED_MARKER, FinishedModel
from kubetune_trainer.delivery import DELIVERED_MARKER, deliver_to_volume, output_location
from kubetune_trainer.events import Reporter
from kubetune_trainer.finalize import MERGED_IN_REPO
from kubetune_trainer.publish import PublishedModel, PublishError, publish_folder
from kubetune_trainer.runfolder import RunFolder

# Operational knobs (not part of the API): how hard to try before giving up on a push.
ATTEMPTS_ENV = "KUBETUNE_PUSH_ATTEMPTS"
BACKOFF_ENV = "KUBETUNE_PUSH_BACKOFF_SECONDS"


def publish_step(config: TrainerConfig, run: RunFolder, finished: FinishedModel, reporter: Reporter,
                 token: str | None) -> TrainerResult:
    output, work = config.spec.output, run.work
    try:
        deliver_to_volume(config, run, finished, reporter)
    except OSError as error:
        model = ModelResult(path=run.where(work.final), base_model_revision=finished.base_model_revision)
        message = (f"the model is trained and saved in {model.path}, but writing it to {output_location(config)} "
                   f"failed: {error.strerror or error}; a new attempt only delivers it")
        reporter.log(message)
        return TrainerResult(status="Failed", reason=FailureReason.PUSH_FAILED, message=message, retryable=True,
                             model=model, metrics=finished.metrics)
    saved_in = output_location(config) or run.where(work.final)
    model = ModelResult(path=saved_in, base_model_revision=finished.base_model_revision)
    if output.repo is None:
        reporter.stage(Stage.DONE, f"model saved in {saved_in}")
        return TrainerResult(status="Succeeded", model=model, metrics=finished.metrics)
    reporter.stage(Stage.PUBLISHING, f"pushing to {output.repo}")
    attempts = int(os.environ.get(ATTEMPTS_ENV, "5"))
    backoff = float(os.environ.get(BACKOFF_ENV, "2"))
    name = f"{config.namespace}/{config.name}"
    try:
        published = publish_folder(
            work.final, repo=output.repo, token=token, endpoint=output.endpoint, private=output.private,
            commit_message=f"kubetune: {name} ({config.spec.method.type.value})",
            ignore_patterns=[FINISHED_MARKER, DELIVERED_MARKER], attempts=attempts, backoff_seconds=backoff,
            log=reporter.log,
        )
        if finished.merged and work.merged.is_dir():
            published = publish_folder(
                work.merged, repo=output.repo, token=token, endpoint=output.endpoint, private=output.private,
                commit_message=f"kubetune: {name} merged model", path_in_repo=MERGED_IN_REPO,
                attempts=attempts, backoff_seconds=backoff, log=reporter.log,
            )
    except PublishError as error:
        reason = error.reason if error.reason is FailureReason.AUTH_FAILED else FailureReason.PUSH_FAILED
        message = (f"the model is trained and saved in {saved_in}, but pushing to {output.repo} failed: "
                   f"{error.message}; a new attempt only pushes it")
        reporter.log(message)
        return TrainerResult(status="Failed", reason=reason, message=message, retryable=error.retryable,
                             model=model, metrics=finished.metrics)
    return _succeeded(published, model, finished, reporter)


def _succeeded(published: PublishedModel, model: ModelResult, finished: FinishedModel,
               reporter: Reporter) -> TrainerResult:
    reporter.stage(Stage.DONE, f"pushed {published.repo}@{published.revision}")
    pushed = model.model_copy(update={"repo": published.repo, "revision": published.revision,
                                      "url": published.url})
    return TrainerResult(status="Succeeded", model=pushed, metrics=finished.metrics)
