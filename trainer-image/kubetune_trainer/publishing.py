"""The publishing step: push <work_dir>/final (and merged/) to the Hub, or just point at the volume.

The adapter (or full model) goes to the repo root in one commit; a merged model follows in
a second commit under merged/ of the same repo, so one repo holds both and the result's
revision (the last commit) has everything. A failed push leaves the weights in place and
says where they are: a new attempt of the Job finds the finished model and only pushes.
"""

from __future__ import annotations

import os

from kubetune.api.contract import FailureReason, TrainerConfig, TrainerResult
from kubetune.api.progress import Stage
from kubetune.api.tuningjob import ModelResult
from kubetune_trainer.checkpoints import FINISHED_MARKER, FinishedModel, WorkDir
from kubetune_trainer.events import Reporter
from kubetune_trainer.finalize import MERGED_IN_REPO
from kubetune_trainer.publish import PublishedModel, PublishError, publish_folder

# Operational knobs (not part of the API): how hard to try before giving up on a push.
ATTEMPTS_ENV = "KUBETUNE_PUSH_ATTEMPTS"
BACKOFF_ENV = "KUBETUNE_PUSH_BACKOFF_SECONDS"


def publish_step(config: TrainerConfig, work: WorkDir, finished: FinishedModel, reporter: Reporter,
                 token: str | None) -> TrainerResult:
    output = config.spec.output
    model = ModelResult(path=str(work.final), base_model_revision=finished.base_model_revision)
    if output.repo is None:
        reporter.stage(Stage.DONE, f"model saved in {work.final}")
        return TrainerResult(status="Succeeded", model=model, metrics=finished.metrics,
                             samples=list(finished.samples))
    reporter.stage(Stage.PUBLISHING, f"pushing to {output.repo}")
    attempts = int(os.environ.get(ATTEMPTS_ENV, "5"))
    backoff = float(os.environ.get(BACKOFF_ENV, "2"))
    name = f"{config.namespace}/{config.name}"
    try:
        published = publish_folder(
            work.final, repo=output.repo, token=token, endpoint=output.endpoint, private=output.private,
            commit_message=f"kubetune: {name} ({config.spec.method.type.value})",
            ignore_patterns=[FINISHED_MARKER], attempts=attempts, backoff_seconds=backoff, log=reporter.log,
        )
        if finished.merged and work.merged.is_dir():
            published = publish_folder(
                work.merged, repo=output.repo, token=token, endpoint=output.endpoint, private=output.private,
                commit_message=f"kubetune: {name} merged model", path_in_repo=MERGED_IN_REPO,
                attempts=attempts, backoff_seconds=backoff, log=reporter.log,
            )
    except PublishError as error:
        reason = error.reason if error.reason is FailureReason.AUTH_FAILED else FailureReason.PUSH_FAILED
        message = (f"the model is trained and saved in {work.final}, but pushing to {output.repo} failed: "
                   f"{error.message}")
        reporter.log(message)
        return TrainerResult(status="Failed", reason=reason, message=message, retryable=error.retryable,
                             model=model, metrics=finished.metrics, samples=list(finished.samples))
    return _succeeded(published, model, finished, reporter)


def _succeeded(published: PublishedModel, model: ModelResult, finished: FinishedModel,
               reporter: Reporter) -> TrainerResult:
    reporter.stage(Stage.DONE, f"pushed {published.repo}@{published.revision}")
    pushed = model.model_copy(update={"repo": published.repo, "revision": published.revision,
                                      "url": published.url})
    return TrainerResult(status="Succeeded", model=pushed, metrics=finished.metrics,
                         samples=list(finished.samples))
