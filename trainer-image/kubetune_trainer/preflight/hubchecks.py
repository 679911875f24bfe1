"""Preflight against the Hub: the token is valid, the base model is readable at its revision
(gated models named as such, with the page where the license is accepted), and the output
repo can be written by the token.

Each check adds to Findings and returns what later checks need; none raises for what the
Hub answers. Endpoints are passed explicitly (a run may read from one hub, push to another),
and no ambient token is ever used: `token=False` when the run has none.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from kubetune.api.basemodel import BaseModelSpec
from kubetune.api.contract import FailureReason
from kubetune.api.tuningjob import OutputSpec
from kubetune_trainer.huberrors import describe_error, error_chain, is_transport_error, status_code
from kubetune_trainer.preflight.findings import Findings
from kubetune_trainer.preflight.identity import Identity

PUBLIC_HUB = "https://huggingface.co"


class HubAnswer(Enum):
    GATED = "gated"
    NO_REPO = "no repo"
    NO_REVISION = "no revision"
    NO_FILE = "no file"
    REFUSED = "refused"  # 401/403 other than the above
    UNREACHABLE = "unreachable"  # network trouble, 5xx, 429
    OTHER = "other"


def classify(error: BaseException) -> HubAnswer:
    """What an exception from huggingface_hub means (GatedRepoError is a RepositoryNotFoundError: checked first)."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    chain = error_chain(error)
    if any(isinstance(e, GatedRepoError) for e in chain):
        return HubAnswer.GATED
    if any(isinstance(e, RevisionNotFoundError) for e in chain):
        return HubAnswer.NO_REVISION
    if any(isinstance(e, RepositoryNotFoundError) for e in chain):
        return HubAnswer.NO_REPO
    status = next((s for s in map(status_code, chain) if s is not None), None)
    if any(isinstance(e, EntryNotFoundError) for e in chain) and status == 404:
        return HubAnswer.NO_FILE
    if status in (401, 403):
        return HubAnswer.REFUSED
    if (status is not None and (status >= 500 or status in (408, 429))) or any(
            is_transport_error(e) or isinstance(e, ConnectionError | TimeoutError) for e in chain):
        return HubAnswer.UNREACHABLE
    return HubAnswer.OTHER


def _api(endpoint: str | None, token: str | None) -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint, token=token if token else False)


def hub_page(endpoint: str | None, repo: str) -> str:
    return f"{(endpoint or PUBLIC_HUB).rstrip('/')}/{repo}"


def check_token(endpoint: str | None, token: str, secret: str, findings: Findings) -> Identity | None:
    """Who the token belongs to and what it may do; None (and an error) when the Hub refuses it."""
    findings.check("token")
    where = endpoint or PUBLIC_HUB
    try:
        return Identity.from_whoami(_api(endpoint, token).whoami())
    except Exception as error:
        answer = classify(error)
        if answer is HubAnswer.UNREACHABLE:
            findings.error(FailureReason.UNREACHABLE, f"cannot reach the Hub at {where} to check the token "
                           f"({describe_error(error, findings.secrets)})", transient=True)
        elif status_code(error) == 401 or answer is HubAnswer.REFUSED:
            findings.error(FailureReason.AUTH_FAILED, f"the Hub at {where} refused the token in {secret}: it is "
                           "invalid, expired or revoked; put a valid token in that Secret")
        else:
            findings.error(FailureReason.AUTH_FAILED, f"cannot check the token in {secret} at {where}: "
                           f"{describe_error(error, findings.secrets)}")
        return None


@dataclass(frozen=True)
class BaseModelFound:
    revision: str | None  # commit sha
    config: Mapping[str, Any] | None  # config.json, for the memory estimate


def check_base_model(spec: BaseModelSpec, token: str | None, identity: Identity | None,
                     findings: Findings) -> BaseModelFound:
    """The base model's commit at spec.revision and its config.json; errors say what to fix."""
    assert spec.repo is not None
    findings.check("baseModel")
    repo, revision = spec.repo, spec.revision
    api = _api(spec.endpoint, token)
    try:
        sha = api.model_info(repo, revision=revision).sha
    except Exception as error:
        _model_error(error, spec, token, identity, findings)
        return BaseModelFound(None, None)
    try:
        with tempfile.TemporaryDirectory(prefix="kubetune-preflight-") as scratch:
            path = api.hf_hub_download(repo, "config.json", revision=sha or revision, cache_dir=scratch)
            config = json.loads(Path(path).read_text(encoding="utf-8"))
    except Exception as error:
        if classify(error) is HubAnswer.NO_FILE:
            findings.error(FailureReason.MODEL_NOT_FOUND, f"baseModel {repo}@{revision} has no config.json: it is "
                           "not a transformers model; name a model repo (or a revision) that has one")
        else:
            _model_error(error, spec, token, identity, findings)
        return BaseModelFound(sha, None)
    return BaseModelFound(sha, config if isinstance(config, dict) else None)


def _model_error(error: BaseException, spec: BaseModelSpec, token: str | None, identity: Identity | None,
                 findings: Findings) -> None:
    repo, revision = spec.repo or "", spec.revision
    answer = classify(error)
    page = hub_page(spec.endpoint, repo)
    if answer is HubAnswer.GATED:
        who = f"the account {identity.user}" if identity is not None and identity.user else "the token's account"
        if token is None:
            message = f"baseModel {repo} is gated and the run has no token: accept its license at {page}, then " \
                      "put a token of that account in a Secret and set spec.hfTokenSecretRef"
        elif identity is not None and not identity.can_read_gated:
            message = f"baseModel {repo} is gated and the fine-grained token may not read gated repos: enable " \
                      f"'Read access to contents of all public gated repos you can access' for it (and accept " \
                      f"the license at {page} with {who})"
        else:
            message = f"baseModel {repo} is gated and {who} has no access yet: accept its license at {page} " \
                      "(access may need the owner's approval), then run again"
        findings.error(FailureReason.MODEL_GATED, message)
    elif answer is HubAnswer.NO_REVISION:
        findings.error(FailureReason.MODEL_NOT_FOUND, f"baseModel {repo} has no revision {revision!r}: name an "
                       "existing branch, tag or commit in baseModel.revision")
    elif answer in (HubAnswer.NO_REPO, HubAnswer.REFUSED):
        hint = ("check the name, or set spec.hfTokenSecretRef if it is private" if token is None else
                "check the name, and that the token's account can read it if it is private")
        findings.error(FailureReason.MODEL_NOT_FOUND, f"baseModel {repo} was not found at "
                       f"{spec.endpoint or PUBLIC_HUB} (or it is private and not readable): {hint}")
    elif answer is HubAnswer.UNREACHABLE:
        findings.error(FailureReason.UNREACHABLE, f"cannot reach the Hub for baseModel {repo} "
                       f"({describe_error(error, findings.secrets)})", transient=True)
    else:
        findings.error(FailureReason.MODEL_NOT_FOUND, f"baseModel {repo}@{revision}: "
                       f"{describe_error(error, findings.secrets)}")


def check_output(spec: OutputSpec, token: str | None, identity: Identity | None, secret: str | None,
                 findings: Findings) -> None:
    """Whether the token can push to spec.repo: by what whoami says, then by the Hub's own write check."""
    assert spec.repo is not None
    findings.check("output")
    repo = spec.repo
    if token is None:
        findings.error(FailureReason.OUTPUT_NOT_WRITABLE, f"output.repo {repo} needs a token with write access and "
                       "the run has none: put one in a Secret and set spec.hfTokenSecretRef")
        return
    if identity is None:
        return  # the token itself was refused: already reported
    why_not = identity.cannot_write(repo)
    if why_not is not None:
        findings.error(FailureReason.OUTPUT_NOT_WRITABLE, f"the token in {secret} cannot push to output.repo "
                       f"{identity.full_repo_id(repo)}: {why_not}")
        return
    try:  # An existing repo: the Hub knows best (e.g. an org member without rights on that repo).
        _api(spec.endpoint, token).auth_check(identity.full_repo_id(repo), write=True)
    except Exception as error:
        if classify(error) is HubAnswer.REFUSED and status_code(error) == 403:
            findings.error(FailureReason.OUTPUT_NOT_WRITABLE, f"the Hub refuses writes to output.repo "
                           f"{identity.full_repo_id(repo)} with the token in {secret}: give its account write "
                           "access to the repo, or push to another repo")
        # 404: the repo does not exist yet and the namespace allows creating it; anything else
        # (a hub without this check, the network) leaves the verdict to whoami.
