"""Publishing to a Hub: a real tiny PEFT adapter pushed to the test server and loaded back."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import yaml
from huggingface_hub import HfApi, ModelCard, hf_hub_download

from kubetune_trainer.output.modelcard import ModelCardInfo, card_metadata, render_model_card
from kubetune_trainer.output.publish import PublishedModel, PublishError, classify, publish_folder
from support.hubserver import HubServer, hub_server_fixture  # noqa: F401

pytestmark = pytest.mark.slow

PROMPT_IDS = [1, 5, 9, 17, 33, 65]
# Prints the adapter's logits for PROMPT_IDS and a greedy continuation, as JSON.
LOAD_AND_GENERATE = """
import json, sys, torch
from peft import PeftModel
from transformers import AutoModelForCausalLM
base = AutoModelForCausalLM.from_pretrained(sys.argv[1])
model = PeftModel.from_pretrained(base, sys.argv[2]).eval()
ids = torch.tensor([json.loads(sys.argv[3])])
with torch.no_grad():
    logits = model(input_ids=ids).logits
    out = model.generate(input_ids=ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
print(json.dumps({"logits": logits[0, -1].tolist(), "generated": out[0].tolist()}))
"""


def card_info(repo: str | None, **overrides: object) -> ModelCardInfo:
    fields: dict[str, object] = {
        "base_model": "kubetune/tiny-llama",
        "base_model_revision": None,
        "datasets": ["kubetune/alpaca-mini", "/data/local.jsonl"],
        "method": "LoRA",
        "task": "textGeneration",
        "hyperparameters": {"epochs": 1, "learningRate": 2e-4, "lora_r": 4, "targetModules": ["q_proj", "v_proj"]},
        "metrics": {"base_eval_loss": 4.85, "eval_loss": 3.12, "trained_tokens": 12345, "runtime_seconds": 41.5},
        "repo": repo,
        "adapter": True,
        "labels": None,
        "license": "apache-2.0",
    }
    fields.update(overrides)
    return ModelCardInfo(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A scratch Llama saved as the base, a LoRA adapter on it, and the adapter's reference logits."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
    )
    base = LlamaForCausalLM(config).eval()
    base.save_pretrained(root / "base")
    ids = torch.tensor([PROMPT_IDS])
    with torch.no_grad():
        base_logits = base(input_ids=ids).logits[0, -1].tolist()
    model = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    )
    # LoRA's B starts at zero (a no-op adapter): make it change the outputs, so loading it shows.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    model.eval()
    with torch.no_grad():
        adapter_logits = model(input_ids=ids).logits[0, -1].tolist()
    adapter = root / "adapter"
    model.save_pretrained(str(adapter))
    return {"base": root / "base", "adapter": adapter, "base_logits": base_logits, "adapter_logits": adapter_logits}


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def publishable(tiny_model: dict[str, object], tmp_path: Path, repo: str) -> Path:
    """A copy of the adapter folder with its model card, as the trainer leaves it."""
    import shutil

    folder = tmp_path / "output"
    shutil.copytree(Path(str(tiny_model["adapter"])), folder)
    (folder / "README.md").write_text(render_model_card(card_info(repo)))
    return folder


def test_published_adapter_loads_back_with_peft(
    hub_server: HubServer, tiny_model: dict[str, object], tmp_path: Path
) -> None:
    folder = publishable(tiny_model, tmp_path, "team/tiny-lora")
    logs: list[str] = []
    published = publish_folder(
        folder,
        repo="team/tiny-lora",
        token=hub_server.token,
        endpoint=hub_server.endpoint,
        private=True,
        commit_message="kubetune: tiny LoRA",
        log=logs.append,
    )

    head = hub_server.commits("team/tiny-lora")[0]
    assert published == PublishedModel(
        repo="team/tiny-lora", revision=head.sha, url=f"{hub_server.endpoint}/team/tiny-lora/tree/{head.sha}"
    )
    assert head.title == "kubetune: tiny LoRA"
    assert hub_server.is_private("team/tiny-lora")
    assert "adapter_model.safetensors" in hub_server.lfs_files("team/tiny-lora")
    stored = hub_server.files("team/tiny-lora")
    for name, digest in snapshot(folder).items():
        assert hashlib.sha256(stored[name]).hexdigest() == digest
    assert any(head.sha in line for line in logs)

    # from_pretrained(repo_id) reads HF_ENDPOINT when huggingface_hub is imported: a fresh process.
    env = {**os.environ, **hub_server.client_env(), "HF_HOME": str(tmp_path / "hf-home")}
    result = subprocess.run(
        [sys.executable, "-c", LOAD_AND_GENERATE, str(tiny_model["base"]), "team/tiny-lora", json.dumps(PROMPT_IDS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["logits"] == pytest.approx(tiny_model["adapter_logits"], abs=1e-4)
    assert loaded["logits"] != pytest.approx(tiny_model["base_logits"], abs=1e-2)  # the adapter did load
    assert loaded["generated"][: len(PROMPT_IDS)] == PROMPT_IDS
    assert len(loaded["generated"]) == len(PROMPT_IDS) + 4
    assert hub_server.request_count("resolve") > 0


def test_model_card_metadata_is_on_the_server(
    hub_server: HubServer, tiny_model: dict[str, object], tmp_path: Path
) -> None:
    folder = publishable(tiny_model, tmp_path, "team/carded")
    publish_folder(
        folder,
        repo="team/carded",
        token=hub_server.token,
        endpoint=hub_server.endpoint,
        private=False,
        commit_message="card",
        log=lambda _: None,
    )
    info = HfApi(endpoint=hub_server.endpoint, token=hub_server.token).model_info("team/carded")
    assert info.card_data is not None
    assert info.card_data.base_model == "kubetune/tiny-llama"
    assert info.card_data.datasets == ["kubetune/alpaca-mini"]
    assert info.card_data.license == "apache-2.0"
    assert info.library_name == "peft" and info.pipeline_tag == "text-generation"
    assert {"kubetune", "lora"} <= set(info.tags or [])
    readme = hf_hub_download(
        "team/carded", "README.md", endpoint=hub_server.endpoint, token=hub_server.token, cache_dir=tmp_path / "cache"
    )
    assert Path(readme).read_text() == (folder / "README.md").read_text()


def test_transient_commit_failures_are_retried_and_the_folder_survives(
    hub_server: HubServer, tiny_model: dict[str, object], tmp_path: Path
) -> None:
    folder = publishable(tiny_model, tmp_path, "team/flaky")
    before = snapshot(folder)
    hub_server.fail_next_commits(2, status=500)
    sleeps: list[float] = []
    logs: list[str] = []
    published = publish_folder(
        folder,
        repo="team/flaky",
        token=hub_server.token,
        endpoint=hub_server.endpoint,
        private=False,
        commit_message="retry me",
        log=logs.append,
        sleep=sleeps.append,
    )
    assert sleeps == [2.0, 4.0]
    assert hub_server.request_count("commit") == 3
    assert [c.title for c in hub_server.commits("team/flaky")] == ["retry me", "initial commit"]
    assert published.revision == hub_server.commits("team/flaky")[0].sha
    assert snapshot(folder) == before
    assert sum("retrying" in line for line in logs) == 2


def test_lost_commit_answer_and_dropped_connection_do_not_duplicate(
    hub_server: HubServer, tiny_model: dict[str, object], tmp_path: Path
) -> None:
    folder = publishable(tiny_model, tmp_path, "team/lossy")
    hub_server.drop_next("commit")  # connection error before the commit happens
    hub_server.lose_next_commit_responses(1)  # the commit happens, its answer is lost
    sleeps: list[float] = []
    published = publish_folder(
        folder,
        repo="team/lossy",
        token=hub_server.token,
        endpoint=hub_server.endpoint,
        private=False,
        commit_message="once",
        sleep=sleeps.append,
        log=lambda _: None,
        backoff_seconds=0.5,
    )
    assert sleeps == [0.5, 1.0]
    history = hub_server.commits("team/lossy")
    assert [c.title for c in history] == ["once", "initial commit"]
    assert published.revision == history[0].sha


def test_giving_up_after_the_last_attempt_is_retryable(
    hub_server: HubServer, tiny_model: dict[str, object], tmp_path: Path
) -> None:
    folder = publishable(tiny_model, tmp_path, "team/down")
    before = snapshot(folder)
    hub_server.fail_next_commits(3, status=502)
    sleeps: list[float] = []
    with pytest.raises(PublishError) as info:
        publish_folder(
            folder,
            repo="team/down",
            token=hub_server.token,
            endpoint=hub_server.endpoint,
            private=False,
            commit_message="x",
            attempts=3,
            sleep=sleeps.append,
            log=lambda _: None,
        )
    assert info.value.reason == "PushFailed" and info.value.retryable
    assert "502" in info.value.message
    assert sleeps == [2.0, 4.0]
    assert snapshot(folder) == before
    assert len(hub_server.commits("team/down")) == 1


@pytest.mark.parametrize("kind", ["wrong", "read-only"])
def test_auth_failure_is_permanent_and_never_shows_the_token(
    hub_server: HubServer,
    tiny_model: dict[str, object],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
) -> None:
    folder = publishable(tiny_model, tmp_path, "team/denied")
    token = "hf_not_the_right_token_kubetune_1234567890"
    if kind == "read-only":
        hub_server.add_token(token, write=False)
    sleeps: list[float] = []
    with pytest.raises(PublishError) as info:
        publish_folder(
            folder,
            repo="team/denied",
            token=token,
            endpoint=hub_server.endpoint,
            private=False,
            commit_message="x",
            sleep=sleeps.append,
        )  # log=print: captured below
    error = info.value
    assert error.reason == "AuthFailed" and not error.retryable
    assert sleeps == []
    assert hub_server.request_count("create_repo") == 1 and hub_server.request_count("commit") == 0
    out = capsys.readouterr()
    shown = [str(error), repr(error), error.message, out.out, out.err, "".join(traceback.format_exception(error))]
    assert "refused the token" in error.message
    assert all(token not in text for text in shown)
    assert hub_server.repo_ids() == []


def test_missing_folder_is_a_config_error(hub_server: HubServer, tmp_path: Path) -> None:
    with pytest.raises(PublishError) as info:
        publish_folder(
            tmp_path / "nope",
            repo="team/x",
            token=hub_server.token,
            endpoint=hub_server.endpoint,
            private=False,
            commit_message="x",
            log=lambda _: None,
        )
    assert info.value.reason == "InvalidConfig" and not info.value.retryable
    assert hub_server.requests == []


def test_classify_treats_connection_errors_as_transient_and_4xx_as_permanent() -> None:
    assert classify(ConnectionResetError("reset"), []).retryable
    assert classify(TimeoutError("slow"), []).retryable
    wrapped = RuntimeError("Error while uploading 'x' to the Hub.")
    wrapped.__cause__ = ConnectionRefusedError("refused")
    assert classify(wrapped, []).retryable
    assert not classify(ValueError("Invalid metadata in README.md."), []).retryable
    secret = classify(ValueError("token hf_secret_value_kubetune leaked"), ["hf_secret_value_kubetune"])
    assert "hf_secret_value_kubetune" not in secret.message


def test_model_card_front_matter_and_sections() -> None:
    text = render_model_card(card_info("team/tiny-lora"))
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta == card_metadata(card_info("team/tiny-lora"))
    assert meta["base_model"] == "kubetune/tiny-llama"
    assert meta["datasets"] == ["kubetune/alpaca-mini"]  # a local path is not Hub metadata
    assert meta["library_name"] == "peft" and meta["pipeline_tag"] == "text-generation"
    assert meta["tags"] == ["kubetune", "lora", "peft"] and meta["license"] == "apache-2.0"
    card = ModelCard(text)  # the client's own parser and metadata model, offline
    assert card.data.to_dict()["base_model"] == "kubetune/tiny-llama" and card.data.to_dict()["library_name"] == "peft"
    for heading in ("# team/tiny-lora", "## Training", "## Results", "## How to use"):
        assert heading in text
    assert "| learningRate | 0.0002 |" in text and "| targetModules | q_proj, v_proj |" in text
    assert "| Eval loss | 4.85 | 3.12 |" in text and "| Trained tokens | 12,345 |" in text
    assert 'PeftModel.from_pretrained(base, "team/tiny-lora")' in text


def test_model_card_for_a_self_hosted_hub_says_where_to_load_from() -> None:
    endpoint = "https://hub.internal.example:8443"
    usage = render_model_card(card_info("team/tiny-lora", endpoint=endpoint)).split("## How to use", 1)[1]
    assert f"`HF_ENDPOINT={endpoint}`" in usage.split("```python", 1)[0]  # said before the code
    assert "HF_ENDPOINT" not in render_model_card(card_info("team/tiny-lora"))


def test_model_card_for_a_merged_classifier() -> None:
    info = card_info(
        "team/clf",
        method="QLoRA",
        task="textClassification",
        adapter=False,
        labels=["positive", "negative"],
        metrics={"accuracy": 0.91, "base_accuracy": 0.5},
        license=None,
        base_model="/models/local-base",
    )
    text = render_model_card(info)
    meta = yaml.safe_load(text.split("---\n")[1])
    assert "base_model" not in meta and "license" not in meta
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-classification"
    assert meta["tags"] == ["kubetune", "qlora"]
    assert "| Accuracy | 0.5 | 0.91 |" in text and "| Eval loss | not measured | not measured |" in text
    assert 'AutoModelForSequenceClassification.from_pretrained("team/clf")' in text
    assert "`positive`, `negative`" in text
    assert ModelCard(text).data.to_dict()["pipeline_tag"] == "text-classification"


def test_model_card_for_an_adapter_on_a_scratch_base_in_the_repo() -> None:
    info = card_info("team/scratch-lora", base_model="a random scratch Llama", base_kind="scratch",
                     base_subfolder="base", merged_subfolder="merged", license=None)
    text = render_model_card(info)
    meta = yaml.safe_load(text.split("---\n")[1])
    assert "base_model" not in meta, "a scratch base has no Hub id"
    assert ModelCard(text).data.to_dict()["library_name"] == "peft"
    assert "fine-tuned from a random scratch Llama, which ships in `base/` of this repo," in text
    usage = text.split("## How to use")[1]
    assert 'local = snapshot_download("team/scratch-lora")' in usage
    assert 'base = AutoModelForCausalLM.from_pretrained(f"{local}/base")' in usage
    assert "PeftModel.from_pretrained(base, local)" in usage
    assert 'snapshot_download("team/scratch-lora", allow_patterns=["merged/*"])' in usage
    assert "scratch Llama\"" not in usage and "from_pretrained(\"a random" not in usage
    # The same card in an output folder (no repo): the folder stands in for the snapshot.
    local = render_model_card(card_info(None, base_model="a random scratch Llama", base_kind="scratch",
                                        base_subfolder="base")).split("## How to use")[1]
    assert 'local = "path/to/this/model"' in local and "snapshot_download" not in local


def test_model_card_for_a_base_from_a_volume() -> None:
    for path, loads in (("pvc:models/llama", '"path/to/the/base/model"'), ("/models/llama", '"/models/llama"')):
        text = render_model_card(card_info("team/from-volume", base_model=path, base_kind="path"))
        assert "base_model" not in yaml.safe_load(text.split("---\n")[1])
        usage = text.split("## How to use")[1]
        assert f"base = AutoModelForCausalLM.from_pretrained({loads})" in usage and path in usage
    merged = render_model_card(card_info("team/from-volume", base_model="kubetune/tiny-llama", adapter=False,
                                         subfolder="merged"))
    assert 'model = AutoModelForCausalLM.from_pretrained(f"{local}/merged")' in merged
    assert yaml.safe_load(merged.split("---\n")[1])["base_model"] == "kubetune/tiny-llama"
