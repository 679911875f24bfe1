"""Base models from a Hub: a private repo on the test server, pinned to its commit, and every way it can fail.

The happy path runs the real `kubetune-trainer` console script in a subprocess whose
environment has no HF_ENDPOINT and no HF_HUB_DISABLE_XET (hf_xet is installed): the trainer
must pass the endpoint to the client itself and turn Xet off for the self-hosted Hub, or
the download or the push fails.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from huggingface_hub import HfApi

from kubetune.api.basemodel import ScratchModel
from kubetune.api.contract import ExitCode, TrainerResult
from kubetune_trainer.cli import main
from kubetune_trainer.training.scratch import build_scratch_model
from support.hubserver import HubServer, start_hub_server
from support.toydata import generation_rows, write_jsonl
from support.trainer_config import data_entry, run_dir, trainer_config, write_config

pytestmark = pytest.mark.slow

BASE_REPO = "acme/tiny-base"
TRAINER = Path(sys.executable).parent / "kubetune-trainer"


@dataclass(frozen=True)
class HubBase:
    server: HubServer
    sha: str  # the commit holding the model


@pytest.fixture(scope="module")
def hub_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubBase]:
    """A private tiny Llama (tokenizer with a chat template) uploaded to a test Hub as acme/tiny-base."""
    folder = tmp_path_factory.mktemp("tiny-base")
    texts = [value for row in generation_rows("alpaca", 64) for value in row.values() if value]
    build_scratch_model(ScratchModel.model_validate({"vocabSize": 300}), texts, folder, seed=3)
    server = start_hub_server()
    try:
        api = HfApi(endpoint=server.endpoint, token=server.token)
        api.create_repo(BASE_REPO, private=True)
        sha = api.upload_folder(repo_id=BASE_REPO, folder_path=folder, commit_message="tiny base").oid
        yield HubBase(server, sha)
    finally:
        server.stop()
    assert not server.internal_errors, server.internal_errors


def _config(tmp_path: Path, base_model: dict[str, Any], **extra: Any) -> Path:
    write_jsonl(tmp_path / "data" / "train.jsonl", generation_rows("alpaca", 24))
    config = trainer_config(tmp_path, train=[data_entry("train.jsonl")],
                            hyperparameters={"maxSteps": 2, "loggingSteps": 1}, **extra)
    config.spec.base_model = config.spec.base_model.model_validate(base_model)
    return write_config(tmp_path, config)


def _result(tmp_path: Path) -> TrainerResult:
    return TrainerResult.model_validate_json((tmp_path / "result.json").read_text(encoding="utf-8"))


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The process environment minus every Hub setting the test suite made, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE"))}
    return {**env, "HF_HOME": str(tmp_path / "hf-home"), **extra}


def test_trains_from_a_private_hub_repo_through_the_cli(tmp_path: Path, hub_base: HubBase) -> None:
    server = hub_base.server
    config = _config(tmp_path, {"repo": BASE_REPO, "endpoint": server.endpoint},
                     output={"repo": "acme/tuned", "endpoint": server.endpoint, "private": True})
    env = _clean_env(tmp_path, HF_TOKEN=server.token)
    assert "HF_ENDPOINT" not in env and "HF_HUB_DISABLE_XET" not in env
    run = subprocess.run([str(TRAINER), "train", "--config", str(config)], env=env, capture_output=True,
                         text=True, timeout=300)
    result = _result(tmp_path)
    assert run.returncode == ExitCode.OK, (result, run.stdout[-3000:], run.stderr[-3000:])
    assert result.status == "Succeeded" and result.model is not None
    assert result.model.base_model_revision == hub_base.sha
    assert f"{BASE_REPO}@{hub_base.sha}" in run.stdout
    assert "Xet transfers off" in run.stdout
    # The adapter went to the same self-hosted Hub through plain LFS.
    assert result.model.repo == "acme/tuned" and result.model.revision == server.commits("acme/tuned")[0].sha
    assert "adapter_model.safetensors" in server.lfs_files("acme/tuned")
    card = server.files("acme/tuned")["README.md"].decode()
    assert yaml.safe_load(card.split("---")[1])["base_model"] == BASE_REPO
    assert hub_base.sha in card, "the card names the base commit"
    for text in (run.stdout, run.stderr, (tmp_path / "result.json").read_text()):
        assert server.token not in text


def test_a_pinned_revision_is_used_even_when_the_branch_moved_on(tmp_path: Path, hub_base: HubBase, own_hf_home: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    server = hub_base.server
    api = HfApi(endpoint=server.endpoint, token=server.token)
    # A newer commit on main that breaks the model: the pinned sha must be what is downloaded.
    moved = api.upload_file(path_or_fileobj=b'{"not": "a model"}', path_in_repo="config.json", repo_id=BASE_REPO,
                            commit_message="break main").oid
    try:
        monkeypatch.setenv("HF_TOKEN", server.token)
        config = _config(tmp_path, {"repo": BASE_REPO, "revision": hub_base.sha, "endpoint": server.endpoint})
        code = main(["train", "--config", str(config)])
        out = capsys.readouterr().out
        result = _result(tmp_path)
        assert code == ExitCode.OK, result
        assert result.model is not None and result.model.base_model_revision == hub_base.sha != moved
        assert server.token not in out
    finally:
        api.upload_file(path_or_fileobj=server.files(BASE_REPO, hub_base.sha)["config.json"],
                        path_in_repo="config.json", repo_id=BASE_REPO, commit_message="restore")


@pytest.fixture
def own_hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process's huggingface_hub cache and token file in tmp_path (both were read at import)."""
    import huggingface_hub.constants as constants

    home = tmp_path / "hf-home"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    return home


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("case", "reason", "exit_code"),
    [
        ("no-token", "AuthFailed", ExitCode.PERMANENT),
        ("wrong-token", "AuthFailed", ExitCode.PERMANENT),
        ("missing-repo", "ModelNotFound", ExitCode.PERMANENT),
        ("missing-revision", "ModelNotFound", ExitCode.PERMANENT),
        ("closed-port", "Unreachable", ExitCode.RETRYABLE),
        ("downloads-fail", "Unreachable", ExitCode.RETRYABLE),
        ("gated", "ModelGated", ExitCode.PERMANENT),
    ],
)
def test_hub_failures_map_to_reasons(tmp_path: Path, hub_base: HubBase, own_hf_home: Path,
                                     monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str], case: str, reason: str,
                                     exit_code: int) -> None:
    server = hub_base.server
    wrong = "hf_" + "WrongTokenValue0123456789abcdefXYZ"
    stranger = "hf_" + "StrangerTokenValue0123456789abcdef"
    server.add_token(stranger, user="stranger", orgs={})
    token = {"no-token": None, "wrong-token": wrong, "gated": stranger}.get(case, server.token)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    if token is not None:
        monkeypatch.setenv("HF_TOKEN", token)
    endpoint = f"http://127.0.0.1:{_closed_port()}" if case == "closed-port" else server.endpoint
    base: dict[str, Any] = {"repo": "acme/no-such-model" if case == "missing-repo" else BASE_REPO,
                            "endpoint": endpoint}
    if case == "missing-revision":
        base["revision"] = "v9"
    if case == "downloads-fail":  # the repo answers, its files do not (more failures than the client retries)
        server.fail_next("resolve", 100, 521)  # a status the client does not retry itself: quick
    repo = server.store.get("model", BASE_REPO)
    assert repo is not None
    if case == "gated":  # public, but its files only for users granted access: not the stranger
        repo.private, repo.gated = False, "manual"
    try:
        code = main(["train", "--config", str(_config(tmp_path, base))])
    finally:
        server.clear_faults()
        repo.private, repo.gated = True, None
    out = capsys.readouterr().out
    result = _result(tmp_path)
    assert (result.status, result.reason, code) == ("Failed", reason, exit_code), result
    assert result.retryable is (exit_code == ExitCode.RETRYABLE)
    assert result.message is not None and BASE_REPO.split("/")[0] in result.message
    if case == "no-token":
        assert "no token was given" in result.message and "hfTokenSecretRef" in result.message
    if case == "wrong-token":
        assert "refused the token" in result.message
    if case == "gated":
        assert "is gated: accept its licence" in result.message
    for secret in (server.token, wrong, stranger):
        assert secret not in out and secret not in (tmp_path / "result.json").read_text()
    assert not (run_dir(tmp_path) / "final").exists()
