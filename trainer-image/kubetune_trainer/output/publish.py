"""Publishing: deliver final/ (and merged/) to output.pvc, push them to a Hugging Face Hub.

The adapter (or full model) goes to the repo root in one commit; a merged model follows in
a second commit under merged/ of the same repo, so one repo holds both and the result's
revision (the last commit) has everything. A failed push leaves the weights in the run folder
on the work volume and says where (pvc:CLAIM/PATH): a new attempt of the Job opens the same
run folder, finds the finished model and only pushes.

Each commit is retried with exponential backoff on transient failures (5xx, 429,
connection errors, timeouts); authentication failures are permanent and fail at once. The
local folders are only read, and the token never appears in what this module logs or
raises. A self-hosted Hub does not speak Xet: hubenv turns it off before the client loads.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from kubetune.api.contract import FailureReason, TrainerConfig, TrainerResult
from kubetune.api.progress import Stage
from kubetune.api.redact import redact
from kubetune.api.tuningjobstatus import ModelResult
from kubetune_trainer.events import Reporter
from kubetune_trainer.huberrors import describe_error, error_chain, is_transport_error, status_code
from kubetune_trainer.output.delivery import DELIVERED_MARKER, deliver_to_volume, output_location
from kubetune_trainer.output.finalize import MERGED_IN_REPO
from kubetune_trainer.runfolder import RunFolder
from kubetune_trainer.workdir import FINISHED_MARKER, FinishedModel

_MAX_BACKOFF_SECONDS = 60.0

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
                             model=model, metrics=finished.metrics, samples=list(finished.samples))
    return _succeeded(published, model, finished, reporter)


def _succeeded(published: PublishedModel, model: ModelResult, finished: FinishedModel,
               reporter: Reporter) -> TrainerResult:
    reporter.stage(Stage.DONE, f"pushed {published.repo}@{published.revision}")
    pushed = model.model_copy(update={"repo": published.repo, "revision": published.revision,
                                      "url": published.url})
    return TrainerResult(status="Succeeded", model=pushed, metrics=finished.metrics, samples=list(finished.samples))


# --- one folder, one commit ------------------------------------------------------------------

@dataclass(frozen=True)
class PublishedModel:
    repo: str
    revision: str  # the commit sha
    url: str


class PublishError(Exception):
    """A publish that did not happen. `message` is safe to show: secrets are redacted."""

    def __init__(self, reason: FailureReason, message: str, *, retryable: bool) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.retryable = retryable


def publish_folder(
    folder: Path,
    *,
    repo: str,
    token: str | None,
    endpoint: str | None,
    private: bool,
    commit_message: str,
    path_in_repo: str = "",
    ignore_patterns: list[str] | None = None,
    attempts: int = 5,
    backoff_seconds: float = 2.0,
    log: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> PublishedModel:
    """Create `repo` if needed and upload `folder` to it in one commit; return that commit."""
    from huggingface_hub import HfApi

    secrets = _secrets(token)
    folder = Path(folder)
    if not folder.is_dir():
        raise PublishError(
            FailureReason.INVALID_CONFIG, f"nothing to publish: {folder} is not a folder", retryable=False
        )
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    api = HfApi(endpoint=endpoint, token=token)
    where = redact(f"{repo} on {api.endpoint}", secrets)
    for attempt in range(1, attempts + 1):
        try:
            repo_url = api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
            info = api.upload_folder(
                repo_id=repo_url.repo_id,
                folder_path=folder,
                path_in_repo=path_in_repo or None,
                commit_message=commit_message,
                ignore_patterns=list(ignore_patterns) if ignore_patterns else None,
                repo_type="model",
            )
        except Exception as exc:
            failure = classify(exc, secrets)
            if not failure.retryable:
                log(f"publish: {where} failed: {failure.message}")
                raise failure from None
            if attempt == attempts:
                log(f"publish: {where} failed after {attempts} attempts: {failure.message}")
                raise PublishError(
                    FailureReason.PUSH_FAILED,
                    f"gave up after {attempts} attempts; last error: {failure.message}",
                    retryable=True,
                ) from None
            delay = min(backoff_seconds * 2 ** (attempt - 1), _MAX_BACKOFF_SECONDS)
            log(
                f"publish: attempt {attempt}/{attempts} to {where} failed ({failure.message}); retrying in {delay:.1f}s"
            )
            sleep(delay)
            continue
        sha = str(info.oid)
        published = PublishedModel(
            repo=repo_url.repo_id, revision=sha, url=f"{api.endpoint}/{repo_url.repo_id}/tree/{sha}"
        )
        log(f"publish: pushed {folder.name} to {where} as commit {sha}")
        return published
    raise AssertionError("unreachable: the loop returns or raises")


def classify(exc: BaseException, secrets: Iterable[str | None]) -> PublishError:
    """Map an exception from huggingface_hub to a PublishError: auth, transient or permanent."""
    message = describe_error(exc, secrets)
    for link in error_chain(exc):
        status = status_code(link)
        if status in (401, 403):
            return PublishError(
                FailureReason.AUTH_FAILED, f"the Hub refused the token (HTTP {status}): {message}", retryable=False
            )
        if status is not None and (status >= 500 or status in (408, 429)):
            return PublishError(FailureReason.PUSH_FAILED, message, retryable=True)
        if status is not None:  # any other 4xx: the request itself is wrong, repeating it cannot help
            return PublishError(FailureReason.PUSH_FAILED, message, retryable=False)
        if isinstance(link, ConnectionError | TimeoutError) or is_transport_error(link):
            return PublishError(FailureReason.PUSH_FAILED, message, retryable=True)
    # Client-side refusals (invalid README metadata, bad repo id...) and our own bugs.
    return PublishError(FailureReason.PUSH_FAILED, message, retryable=False)


def _secrets(token: str | None) -> list[str | None]:
    # The client falls back to these when no token is passed.
    return [token, os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")]
