"""`kubetune-trainer preflight` against the Hub test server: bad token, unreadable and gated
models, tokens that cannot write the output repo, unreachable data, a run that won't fit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import HfApi

from kubetune.api.contract import TERMINATION_MESSAGE_LIMIT, ExitCode, PreflightReport, TrainerConfig
from kubetune_trainer.cli import main
from support.hubaccess import READ, WRITE
from support.hubserver import HubServer, start_hub_server
from support.modelconfigs import LLAMA_3_8B, SMALL_LLAMA
from support.toydata import generation_rows, write_jsonl
from support.trainer_config import DATA_CLAIM, data_entry, trainer_config, write_config


@pytest.fixture(scope="module")
def hub() -> Iterator[HubServer]:
    """One server for the module (each test uses its own repo names); models hold a config.json only."""
    server = start_hub_server()
    api = HfApi(endpoint=server.endpoint, token=server.token)
    for repo, config, private in (("lab/small", SMALL_LLAMA, False), ("lab/big", LLAMA_3_8B, False),
                                  ("lab/private", SMALL_LLAMA, True), ("vendor/gated", SMALL_LLAMA, False)):
        api.create_repo(repo, private=private)
        api.upload_file(path_or_fileobj=json.dumps(config).encode(), path_in_repo="config.json", repo_id=repo)
    server.gate("vendor/gated", granted=("friend",))
    api.create_repo("team/rows", repo_type="dataset")
    rows = "".join(json.dumps(r) + "\n" for r in generation_rows("alpaca", 8)).encode()
    api.upload_file(path_or_fileobj=rows, path_in_repo="train.jsonl", repo_id="team/rows", repo_type="dataset")
    server.add_token("hf_reader", write=False)
    server.add_token("hf_stranger", user="stranger", orgs={})
    server.add_token("hf_friend", user="friend", orgs={})
    server.add_token("hf_guest", user="guest", orgs={"team": "read"})
    server.add_fine_grained_token("hf_fine_out", {"team/out-fine": {READ, WRITE}, "team": {READ}},
                                  orgs={"team": "write"})
    server.add_fine_grained_token("hf_fine_nogated", {"friend": {READ, WRITE}}, user="friend", orgs={},
                                  can_read_gated=False)
    try:
        yield server
    finally:
        server.stop()
    assert not server.internal_errors, server.internal_errors


def config_for(tmp_path: Path, hub: HubServer, *, model: str = "lab/small", output: str | None = "team/out",
               train: list[dict[str, Any]] | None = None, **extra: Any) -> TrainerConfig:
    write_jsonl(tmp_path / "data" / "train.jsonl", generation_rows("alpaca", 8))
    spec: dict[str, Any] = {"baseModel": {"repo": model, "endpoint": hub.endpoint},
                            "hfTokenSecretRef": {"name": "hf-secret"}, "resources": {"gpus": 1, "gpuMemory": "80Gi"}}
    spec.update(extra)
    output_spec = {"repo": output, "endpoint": hub.endpoint} if output else None
    config = trainer_config(tmp_path, train or [data_entry("train.jsonl")], output=output_spec)
    merged = {**config.spec.to_wire(), **spec}
    if output is None:
        merged.pop("hfTokenSecretRef")
    return config.model_copy(update={"spec": config.spec.model_validate(merged)})


def preflight(tmp_path: Path, config: TrainerConfig, monkeypatch: pytest.MonkeyPatch,
              capsys: pytest.CaptureFixture[str], token: str | None) -> tuple[int, PreflightReport, str]:
    if token is None:
        monkeypatch.delenv("HF_TOKEN", raising=False)
    else:
        monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.delenv("KUBETUNE_DATA_TOKEN", raising=False)
    code = main(["preflight", "--config", str(write_config(tmp_path, config))])
    out = capsys.readouterr().out
    raw = (tmp_path / "result.json").read_text(encoding="utf-8")
    assert len(raw.encode()) <= TERMINATION_MESSAGE_LIMIT
    assert raw == out.strip().splitlines()[-1], "the JSON is also the last line of the log"
    if token is not None:
        assert token not in out
    return code, PreflightReport.model_validate_json(raw), out


def reasons(report: PreflightReport) -> list[str]:
    return [f"{i.severity}:{i.reason}" for i in report.issues]


def test_a_sound_setup_passes_and_pins_the_model_commit(tmp_path: Path, hub: HubServer,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, report, out = preflight(tmp_path, config_for(tmp_path, hub), monkeypatch, capsys, hub.token)
    assert code == ExitCode.OK and report.outcome == "Passed" and report.issues == [], report
    assert report.checked == ["token", "baseModel", "output", "data", "memory"]
    assert report.base_model_revision == hub.commits("lab/small")[0].sha
    assert report.memory is not None and report.memory.fits is True and report.memory.gpu_bytes == 80 * 2**30
    assert "Passed" in out and report.base_model_revision in out


def test_a_bad_token_fails_as_auth_failed_naming_the_secret(tmp_path: Path, hub: HubServer,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, report, _ = preflight(tmp_path, config_for(tmp_path, hub), monkeypatch, capsys, "hf_revoked_token_42")
    assert code == ExitCode.PERMANENT and report.outcome == "Failed" and report.retryable is False
    assert reasons(report) == ["Error:AuthFailed"], "checks that need the refused token are not reported twice"
    assert "Secret hf-secret (key token)" in report.issues[0].message
    assert "hf_revoked_token_42" not in report.issues[0].message


@pytest.mark.parametrize(("model", "revision", "token", "words"), [
    ("lab/missing", "main", "hf_test_token_kubetune", "was not found"),
    ("lab/private", "main", "hf_stranger", "was not found"),
    ("lab/small", "no-such-branch", "hf_test_token_kubetune", "has no revision 'no-such-branch'"),
])
def test_an_unreadable_model_fails_as_model_not_found(tmp_path: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str], model: str, revision: str,
                                                      token: str, words: str) -> None:
    config = config_for(tmp_path, hub, model=model, output=None)
    config.spec.base_model.revision = revision
    code, report, _ = preflight(tmp_path, config, monkeypatch, capsys, token)
    assert code == ExitCode.PERMANENT and reasons(report) == ["Error:ModelNotFound"]
    assert words in report.issues[0].message and report.base_model_revision is None


def test_a_gated_model_says_where_to_accept_the_license(tmp_path: Path, hub: HubServer,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    config = config_for(tmp_path, hub, model="vendor/gated", output=None)
    code, report, _ = preflight(tmp_path, config, monkeypatch, capsys, "hf_stranger")
    assert code == ExitCode.PERMANENT and reasons(report) == ["Error:ModelGated"]
    message = report.issues[0].message
    assert f"{hub.endpoint}/vendor/gated" in message and "the account stranger" in message

    _, anonymous, _ = preflight(tmp_path, config, monkeypatch, capsys, None)
    assert reasons(anonymous) == ["Error:ModelGated"] and "has no token" in anonymous.issues[0].message

    _, fine, _ = preflight(tmp_path, config, monkeypatch, capsys, "hf_fine_nogated")
    assert reasons(fine) == ["Error:ModelGated"] and "gated repos" in fine.issues[0].message

    code, granted, _ = preflight(tmp_path, config, monkeypatch, capsys, "hf_friend")
    assert code == ExitCode.OK and granted.base_model_revision == hub.commits("vendor/gated")[0].sha


@pytest.mark.parametrize(("token", "output", "words"), [
    ("hf_reader", "team/out", "it is a read token"),
    ("hf_guest", "team/out", "guest is a read member of team"),
    ("hf_fine_out", "team/other", "no repo.write permission on team/other"),
    (None, "team/out", "the run has none"),
])
def test_a_token_that_cannot_write_the_output_fails_before_training(tmp_path: Path, hub: HubServer,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str],
                                                                    token: str | None, output: str,
                                                                    words: str) -> None:
    code, report, _ = preflight(tmp_path, config_for(tmp_path, hub, output=output), monkeypatch, capsys, token)
    assert code == ExitCode.PERMANENT and reasons(report) == ["Error:OutputNotWritable"]
    assert words in report.issues[0].message


def test_a_fine_grained_token_with_write_on_the_repo_passes(tmp_path: Path, hub: HubServer,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, report, _ = preflight(tmp_path, config_for(tmp_path, hub, output="team/out-fine"), monkeypatch, capsys,
                                "hf_fine_out")
    assert code == ExitCode.OK, report


def test_an_existing_repo_the_hub_refuses_is_not_writable(tmp_path: Path, hub: HubServer,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # A contributor of an org may create repos there (so whoami allows the namespace), but
    # may not push to one someone else created: the Hub's own write check says so.
    hub.add_token("hf_contributor", user="carl", orgs={"team": "contributor"})
    HfApi(endpoint=hub.endpoint, token=hub.token).create_repo("team/someone-elses")
    code, report, _ = preflight(tmp_path, config_for(tmp_path, hub, output="team/someone-elses"), monkeypatch,
                                capsys, "hf_contributor")
    assert code == ExitCode.PERMANENT and reasons(report) == ["Error:OutputNotWritable"]
    assert "the Hub refuses writes to output.repo team/someone-elses" in report.issues[0].message

    code, report, _ = preflight(tmp_path, config_for(tmp_path, hub, output="team/carls-new"), monkeypatch,
                                capsys, "hf_contributor")
    assert code == ExitCode.OK, report


def test_unreachable_data_fails_and_hub_data_is_pinned(tmp_path: Path, hub: HubServer,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    hub_data = {"source": {"hf": {"repo": "team/rows", "endpoint": hub.endpoint}}}
    good = config_for(tmp_path, hub, train=[hub_data, data_entry("train.jsonl")])
    code, report, _ = preflight(tmp_path, good, monkeypatch, capsys, hub.token)
    assert code == ExitCode.OK, report
    assert [(d.name, d.revision) for d in report.datasets] == [
        ("hf:team/rows", hub.commits("team/rows", repo_type="dataset")[0].sha)]

    bad = config_for(tmp_path, hub, train=[{"source": {"hf": {"repo": "team/none", "endpoint": hub.endpoint}}},
                                           data_entry("missing.jsonl"),
                                           {"source": {"url": {"url": "https://127.0.0.1:9/x.jsonl"}}}])
    code, report, _ = preflight(tmp_path, bad, monkeypatch, capsys, hub.token)
    assert code == ExitCode.PERMANENT
    assert reasons(report) == ["Error:DataUnreachable"] * 3
    messages = [i.message for i in report.issues]
    assert messages[0].startswith("datasets.train[0] (hf:team/none)")
    assert messages[1].startswith(f"datasets.train[1] (pvc:{DATA_CLAIM}/missing.jsonl)")
    assert "private" in messages[2] or "loopback" in messages[2] or "refusing" in messages[2]


def test_a_run_that_wont_fit_is_a_warning_with_a_batch_that_would(tmp_path: Path, hub: HubServer,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = config_for(tmp_path, hub, model="lab/big")
    config.spec.hyperparameters.max_seq_length = 2048
    code, report, _ = preflight(tmp_path, config, monkeypatch, capsys, hub.token)
    assert code == ExitCode.OK and report.outcome == "Passed"
    assert reasons(report) == ["Warning:WontFit"]
    assert report.memory is not None and report.memory.fits is False and report.memory.largest_fitting_batch == 4
    assert "perDeviceBatchSize 4 is estimated to fit" in report.issues[0].message

    config.spec.method = config.spec.method.model_validate({"type": "Full"})
    _, full, _ = preflight(tmp_path, config, monkeypatch, capsys, hub.token)
    assert full.memory is not None and full.memory.largest_fitting_batch == 0
    assert "not even a batch of 1" in full.issues[0].message


def test_the_memory_estimate_counts_the_gpus_of_every_node(tmp_path: Path, hub: HubServer,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """An 8B model fully fine-tuned on 2 nodes x 8 GPUs of 80 GiB: with DDP every GPU holds the
    whole training state (it cannot fit); FSDP shards it over all 16 (it fits), and Auto picks FSDP."""
    resources = {"gpus": 8, "nodes": 2, "gpuMemory": "80Gi"}
    config = config_for(tmp_path, hub, model="lab/big", method={"type": "Full"}, resources=resources,
                        distributed={"strategy": "DDP"})
    config.spec.hyperparameters.per_device_batch_size = 1
    config.spec.hyperparameters.max_seq_length = 2048
    _, ddp, _ = preflight(tmp_path, config, monkeypatch, capsys, hub.token)
    assert reasons(ddp) == ["Warning:WontFit"] and ddp.memory is not None and ddp.memory.fits is False
    assert "per GPU (DDP over 16 GPUs on 2 nodes: each holds a whole copy)" in ddp.issues[0].message
    assert "distributed.strategy FSDP (sharded over the 16 GPUs) is estimated to fit" in ddp.issues[0].message

    for strategy in ("FSDP", "Auto"):
        config.spec.distributed.strategy = config.spec.distributed.strategy.__class__(strategy)
        _, sharded, _ = preflight(tmp_path, config, monkeypatch, capsys, hub.token)
        assert sharded.issues == [] and sharded.memory is not None and sharded.memory.fits is True, strategy
        assert sharded.memory.bytes_per_gpu < ddp.memory.bytes_per_gpu / 3

    config.spec.resources.nodes = 1
    _, one_node, _ = preflight(tmp_path, config, monkeypatch, capsys, hub.token)
    assert one_node.memory is not None and ddp.memory.bytes_per_gpu > one_node.memory.bytes_per_gpu \
        > sharded.memory.bytes_per_gpu, "sharded over 8 GPUs: more per GPU than over 16"


def test_an_unreachable_hub_is_retryable(tmp_path: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    down = start_hub_server()
    down.stop()  # a closed port: connection refused
    config = config_for(tmp_path, hub, output=None)
    config.spec.base_model.endpoint = down.endpoint
    code, report, _ = preflight(tmp_path, config, monkeypatch, capsys, hub.token)
    assert code == ExitCode.RETRYABLE and report.retryable is True
    assert reasons(report) == ["Error:Unreachable"]


def test_the_preflight_imports_no_torch(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data" / "train.jsonl", generation_rows("alpaca", 8))
    path = write_config(tmp_path, trainer_config(tmp_path, [data_entry("train.jsonl")]))
    script = ("import sys\nfrom kubetune_trainer.cli import main\n"
              f"code = main(['preflight', '--config', {str(path)!r}])\n"
              "print('torch loaded' if 'torch' in sys.modules else 'no torch', code)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)
    assert result.stdout.strip().splitlines()[-1] == "no torch 0", result.stdout + result.stderr
    report = PreflightReport.model_validate_json((tmp_path / "result.json").read_text())
    assert report.checked == ["data", "memory"] and report.memory is not None
