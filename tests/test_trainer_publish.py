"""Train -> push to a Hub-compatible server -> load back and generate; failed pushes lose nothing."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubetune.api.contract import ExitCode, TrainerResult
from kubetune.api.progress import Stage, StageEvent, parse_line
from kubetune_trainer.cli import main
from support.hubserver import HubServer, hub_server_fixture  # noqa: F401
from support.toydata import generation_rows, write_jsonl
from support.trainer_config import data_entry, run_dir, trainer_config, write_config

pytestmark = pytest.mark.slow

LOAD_AND_GENERATE = """
import json, sys
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
repo = sys.argv[1]
tokenizer = AutoTokenizer.from_pretrained(repo)
from huggingface_hub import snapshot_download
# transformers looks for adapter_config.json at the repo root even with subfolder= and then follows
# the adapter's base path: load the scratch base and the merged model from a local snapshot.
local = snapshot_download(repo)
base = AutoModelForCausalLM.from_pretrained(local + "/base")
adapter = PeftModel.from_pretrained(base, repo).eval()
merged = AutoModelForCausalLM.from_pretrained(local + "/merged").eval()
prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Capital of Peru?"}],
                                       add_generation_prompt=True, return_tensors="pt", return_dict=True)
out = {}
for name, model in (("adapter", adapter), ("merged", merged)):
    ids = model.generate(**prompt, max_new_tokens=6, do_sample=False)
    out[name] = ids[0, prompt["input_ids"].shape[1]:].tolist()
print(json.dumps(out))
"""


def card_snippets(card: str) -> str:
    """Every python block of the card, as one script that must run."""
    blocks = re.findall(r"```python\n(.*?)```", card, re.S)
    assert blocks, card
    return "\n".join(blocks)


def _train(tmp_path: Path, server: HubServer, repo: str, *, merge: bool = False) -> tuple[int, TrainerResult,
                                                                                          list[str]]:
    config = trainer_config(tmp_path, train=[data_entry("train.jsonl")], hyperparameters={"maxSteps": 6},
                            output={"repo": repo, "endpoint": server.endpoint, "private": True, "merge": merge})
    code = main(["train", "--config", str(write_config(tmp_path, config))])
    return code, TrainerResult.model_validate_json((tmp_path / "result.json").read_text()), []


@pytest.fixture
def hub_env(hub_server: HubServer, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    monkeypatch.setenv("HF_TOKEN", hub_server.token)
    monkeypatch.setenv("KUBETUNE_PUSH_BACKOFF_SECONDS", "0.05")
    monkeypatch.setenv("KUBETUNE_PUSH_ATTEMPTS", "3")
    return hub_server


def test_train_push_load_and_generate(tmp_path: Path, hub_env: HubServer, capsys: pytest.CaptureFixture[str]) -> None:
    write_jsonl(tmp_path / "data" / "train.jsonl", generation_rows("alpaca", 40))
    repo = f"{hub_env.user}/capitals"
    code, result, _ = _train(tmp_path, hub_env, repo, merge=True)
    out = capsys.readouterr().out
    assert code == ExitCode.OK, result
    assert result.model is not None and result.model.repo == repo
    commits = hub_env.commits(repo)
    assert result.model.revision == commits[0].sha
    assert "merged" in commits[0].title and "merged" not in commits[1].title, "adapter commit, then merged/"
    files = hub_env.files(repo)
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "README.md",
                 "base/model.safetensors", "merged/model.safetensors", "merged/config.json"):
        assert name in files, sorted(files)
    assert any(name.startswith("runs/") for name in files)
    assert "kubetune-finished.json" not in files
    assert hub_env.is_private(repo)
    card = files["README.md"].decode()
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["library_name"] == "peft" and "lora" in metadata["tags"]
    assert f"HF_ENDPOINT={hub_env.endpoint}" in card  # the card says which Hub to load it from
    assert f"{result.metrics.eval_loss:.4g}" in card if result.metrics and result.metrics.eval_loss else False
    assert hub_env.token not in out

    env = {**os.environ, **hub_env.client_env(), "HF_HOME": str(tmp_path / "hf-home")}
    loaded = subprocess.run([sys.executable, "-c", LOAD_AND_GENERATE, repo], capture_output=True, text=True,
                            env=env, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    generated = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert len(generated["adapter"]) > 0
    assert generated["adapter"] == generated["merged"], "the merged model generates what base + adapter does"

    # The cards say how to load what the repo holds: the scratch base from base/, the merged model from merged/.
    assert "base_model" not in metadata, "a scratch base has no Hub id"
    assert "scratch" in card and "`base/`" in card and 'snapshot_download("' + repo + '")' in card
    assert card.count("```python") == 2 and 'from_pretrained(f"{local}/merged")' in card
    merged_card = files["merged/README.md"].decode()
    assert yaml.safe_load(merged_card.split("---")[1])["library_name"] == "transformers"
    assert "base_model" not in yaml.safe_load(merged_card.split("---")[1])
    for text in (card, merged_card):
        snippet = subprocess.run([sys.executable, "-c", card_snippets(text)], capture_output=True, text=True,
                                 env=env, timeout=300)
        assert snippet.returncode == 0, snippet.stderr[-3000:] + card_snippets(text)


def _digest(folder: Path) -> str:
    return hashlib.sha256((folder / "adapter_model.safetensors").read_bytes()).hexdigest()


def test_failed_pushes_keep_the_model_and_a_rerun_only_pushes(tmp_path: Path, hub_env: HubServer,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    write_jsonl(tmp_path / "data" / "train.jsonl", generation_rows("alpaca", 40))
    repo = f"{hub_env.user}/flaky"
    hub_env.fail_next_commits(5)  # more than KUBETUNE_PUSH_ATTEMPTS
    code, result, _ = _train(tmp_path, hub_env, repo)
    capsys.readouterr()
    assert code == ExitCode.RETRYABLE
    assert result.status == "Failed" and result.reason == "PushFailed" and result.retryable
    final = run_dir(tmp_path) / "final"
    assert result.model is not None and result.model.path == str(final)
    assert result.message is not None and f"saved in {final}" in result.message
    assert "a new attempt only pushes it" in result.message
    assert result.metrics is not None and result.metrics.steps == 6
    trained = _digest(final)

    # Two of the five faults are left: the re-run's first two attempts fail, the third succeeds.
    code, result, _ = _train(tmp_path, hub_env, repo)
    lines = capsys.readouterr().out.splitlines()
    assert code == ExitCode.OK, result
    stages = [e.stage for e in map(parse_line, lines) if isinstance(e, StageEvent)]
    assert Stage.TRAINING not in stages and Stage.PUBLISHING in stages
    assert result.metrics is not None and result.metrics.steps == 6
    assert _digest(final) == trained
    pushed = hub_env.files(repo)["adapter_model.safetensors"]
    assert hashlib.sha256(pushed).hexdigest() == trained
