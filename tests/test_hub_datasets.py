"""Hub dataset repos read through `datasets` (configs, exact splits, data_files, pinned commits, streaming),
against the Hub test server, with the real huggingface_hub and datasets clients."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kubetune.api.contract import FailureReason, Mounts
from kubetune.api.dataset import DataSource
from kubetune_trainer.data.formats import RowDefect
from kubetune_trainer.data.sources import OpenedSource, SourceError, open_source
from support.hubserver import HubServer, hub_server_fixture  # noqa: F401

CARD = b"""---
license: mit
configs:
- config_name: en
  data_files:
  - split: train
    path: en/train.jsonl
  - split: train_sft
    path: en/train_sft.jsonl
- config_name: fr
  data_files: fr/*.jsonl
---
# Rows in two languages
"""


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def parquet(rows: list[dict[str, Any]], tmp: Path, name: str) -> bytes:
    path = tmp / name
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=2)
    return path.read_bytes()


def pairs(tag: str, n: int) -> list[dict[str, Any]]:
    return [{"prompt": f"{tag} question {i}", "completion": f"{tag} answer {i}"} for i in range(n)]


def upload(server: HubServer, repo: str, files: dict[str, bytes], message: str = "data") -> str:
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=server.endpoint, token=server.token)
    api.create_repo(repo, repo_type="dataset", exist_ok=True)
    info = api.create_commit(repo, repo_type="dataset", commit_message=message, operations=[
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=data) for name, data in files.items()])
    return str(info.oid)


def source(server: HubServer, repo: str, **fields: Any) -> DataSource:
    return DataSource.model_validate({"hf": {"repo": repo, "endpoint": server.endpoint, **fields}})


def read(server: HubServer, tmp: Path, repo: str, **fields: Any) -> tuple[OpenedSource, list[Any]]:
    opened = open_source(source(server, repo, **fields), mounts=Mounts(), token=server.token, cache_dir=tmp)
    return opened, [(n, r if not isinstance(r, RowDefect) else f"DEFECT {r.message}") for n, r in opened]


def failure(server: HubServer, tmp: Path, repo: str, **fields: Any) -> SourceError:
    with pytest.raises(SourceError) as caught:
        read(server, tmp, repo, **fields)
    assert server.token not in caught.value.message
    return caught.value


@pytest.fixture
def configs_repo(hub_server: HubServer) -> tuple[HubServer, str]:
    upload(hub_server, "team/configs", {
        "README.md": CARD,
        "en/train.jsonl": jsonl(pairs("en", 3)),
        "en/train_sft.jsonl": jsonl(pairs("sft", 2)),
        "fr/part-a.jsonl": jsonl(pairs("fr", 2)),
    })
    return hub_server, "team/configs"


def test_readme_configs_choose_the_files_and_split_names_match_exactly(configs_repo: tuple[HubServer, str],
                                                                       tmp_path: Path) -> None:
    server, repo = configs_repo
    opened, rows = read(server, tmp_path, repo, subset="en")
    assert opened.files == ["en/train.jsonl"]  # not en/train_sft.jsonl
    assert [r["prompt"] for _, r in rows] == ["en question 0", "en question 1", "en question 2"]
    assert [n for n, _ in rows] == [1, 2, 3]
    assert opened.revision == server.commits(repo, repo_type="dataset")[0].sha
    assert opened.size_bytes == len(jsonl(pairs("en", 3)))

    _, sft = read(server, tmp_path, repo, subset="en", split="train_sft")
    assert [r["completion"] for _, r in sft] == ["sft answer 0", "sft answer 1"]
    _, french = read(server, tmp_path, repo, subset="fr")
    assert [r["prompt"] for _, r in french] == ["fr question 0", "fr question 1"]


@pytest.mark.parametrize(("fields", "words"), [
    ({}, "has several configs and no default (en, fr): set spec.source.hf.subset"),
    ({"subset": "de"}, "has no config 'de': its configs are en, fr"),
    ({"subset": "en", "split": "test"}, "has no split 'test': its splits are train, train_sft"),
])
def test_a_missing_config_or_split_names_the_ones_that_exist(configs_repo: tuple[HubServer, str], tmp_path: Path,
                                                             fields: dict[str, Any], words: str) -> None:
    server, repo = configs_repo
    error = failure(server, tmp_path, repo, **fields)
    assert error.reason is FailureReason.DATASET_NOT_FOUND
    assert words in error.message


def test_sharded_split_names_are_exact(hub_server: HubServer, tmp_path: Path) -> None:
    # The layout push_to_hub writes (as in HuggingFaceH4/ultrachat_200k): train_sft is not train.
    upload(hub_server, "team/ultra", {
        "data/train_sft-00000-of-00001.parquet": parquet(pairs("sft", 3), tmp_path, "a.parquet"),
        "data/train_gen-00000-of-00001.parquet": parquet(pairs("gen", 2), tmp_path, "b.parquet"),
        "data/test_sft-00000-of-00001.parquet": parquet(pairs("test", 1), tmp_path, "c.parquet"),
    })
    error = failure(hub_server, tmp_path, "team/ultra")
    assert "has no split 'train': its splits are test_sft, train_gen, train_sft" in error.message
    _, rows = read(hub_server, tmp_path, "team/ultra", split="train_gen")
    assert [r["prompt"] for _, r in rows] == ["gen question 0", "gen question 1"]


def test_revision_is_pinned_to_a_commit_and_streaming_matches_the_cached_read(hub_server: HubServer,
                                                                                tmp_path: Path) -> None:
    first = upload(hub_server, "team/moving", {"train.jsonl": jsonl(pairs("old", 2))})
    second = upload(hub_server, "team/moving", {"train.jsonl": jsonl(pairs("new", 4))}, "more")
    pinned, old_rows = read(hub_server, tmp_path, "team/moving", revision=first)
    assert pinned.revision == first and [r["prompt"] for _, r in old_rows] == ["old question 0", "old question 1"]
    latest, streamed = read(hub_server, tmp_path, "team/moving")
    assert latest.revision == second and len(streamed) == 4
    cached, downloaded = read(hub_server, tmp_path / "cache", "team/moving", streaming=False)
    assert downloaded == streamed and cached.revision == second
    assert any((tmp_path / "cache" / "datasets").rglob("*.arrow"))  # the non-streaming read went through the cache


def test_data_files_pick_files_and_become_the_named_split(hub_server: HubServer, tmp_path: Path) -> None:
    upload(hub_server, "team/loose", {
        "dumps/2024.jsonl": jsonl(pairs("a", 2)),
        "dumps/2025.jsonl": jsonl(pairs("b", 1)),
        "notes/readme.jsonl": jsonl([{"text": "notes"}]),
    })
    opened, rows = read(hub_server, tmp_path, "team/loose", files=["dumps/*.jsonl"], split="mine")
    assert opened.files == ["dumps/2024.jsonl", "dumps/2025.jsonl"]
    assert [r["prompt"] for _, r in rows] == ["a question 0", "a question 1", "b question 0"]
    error = failure(hub_server, tmp_path, "team/loose", files=["*.csv"])
    assert error.reason is FailureReason.DATASET_NOT_FOUND and "no data file matches files=['*.csv']" in error.message


def test_a_broken_line_ends_the_stream_with_a_defect_that_says_where(hub_server: HubServer, tmp_path: Path) -> None:
    good = jsonl(pairs("ok", 2))
    upload(hub_server, "team/broken", {"train.jsonl": good + b'{"prompt": "cut off\n'})
    _, rows = read(hub_server, tmp_path, "team/broken")
    assert rows[-1][0] == 0 and "cannot read on" in rows[-1][1] and "spec.source.hf.files" in rows[-1][1]
    assert "JSON parse error" in rows[-1][1]  # the parser's words, not a wrapper's


def test_the_process_wide_hub_settings_are_restored(hub_server: HubServer, tmp_path: Path) -> None:
    import datasets
    import huggingface_hub.constants as hub_constants

    before = (datasets.config.HF_ENDPOINT, hub_constants.ENDPOINT, hub_constants.HF_HUB_CACHE)
    upload(hub_server, "team/settings", {"train.jsonl": jsonl(pairs("x", 1))})
    _, rows = read(hub_server, tmp_path, "team/settings")
    assert len(rows) == 1
    assert before == (datasets.config.HF_ENDPOINT, hub_constants.ENDPOINT, hub_constants.HF_HUB_CACHE)
    assert hub_server.request_count("unknown") == 0  # only routes the test Hub knows were asked


def test_hub_rows_feed_the_trainer_data_path(configs_repo: tuple[HubServer, str], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets
    import huggingface_hub.constants as hub_constants

    from kubetune.api.tuningjob import DatasetEntry
    from kubetune_trainer.data.datamix import load_entry
    from kubetune_trainer.data.formats import ChatExample

    server, repo = configs_repo
    # The trainer uses the process's caches (HF_HOME in the Pod): here, the test's folder.
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    entry = DatasetEntry.model_validate({"source": {"hf": {"repo": repo, "subset": "en", "split": "train_sft",
                                                           "endpoint": server.endpoint}}})
    loaded = load_entry(entry, "configs", mounts=Mounts(), token=server.token)
    assert loaded.fmt.value == "promptCompletion" and len(loaded.examples) == 2
    assert loaded.revision == server.commits(repo, repo_type="dataset")[0].sha
    first = loaded.examples[0]
    assert isinstance(first, ChatExample) and first.messages[-1].content == "sft answer 0"
