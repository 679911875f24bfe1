"""The Hub test server, exercised through the real huggingface_hub client."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from huggingface_hub import HfApi, HfFileSystem, RepoFile, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from support.hubserver import HubServer, hub_server_fixture  # noqa: F401

pytestmark = pytest.mark.slow


def make_folder(root: Path) -> Path:
    folder = root / "model"
    (folder / "nested").mkdir(parents=True)
    (folder / "config.json").write_text('{"hidden_size": 64}\n')
    (folder / "nested" / "notes.txt").write_text("plain text goes into git\n")
    # Random bytes with NULs: binary, and a .safetensors name: both send it through LFS.
    (folder / "weights.safetensors").write_bytes(os.urandom(64 * 1024) + b"\0")
    return folder


def api_for(server: HubServer, token: str | bool | None = None) -> HfApi:
    return HfApi(endpoint=server.endpoint, token=server.token if token is None else token)


def test_create_repo_is_idempotent_with_exist_ok(hub_server: HubServer) -> None:
    api = api_for(hub_server)
    url = api.create_repo("team/first", private=False)
    assert url.repo_id == "team/first"
    assert url == f"{hub_server.endpoint}/team/first"
    # The 409 answer carries "url", which exist_ok=True needs.
    again = api.create_repo("team/first", exist_ok=True)
    assert again.repo_id == "team/first"
    with pytest.raises(HfHubHTTPError) as info:
        api.create_repo("team/first")
    assert info.value.response.status_code == 409
    # A name without namespace lands in the token owner's namespace.
    assert api.create_repo("solo").repo_id == f"{hub_server.user}/solo"
    assert hub_server.repo_ids() == ["kubetune-test/solo", "team/first"]
    assert api.whoami()["name"] == hub_server.user


def test_upload_folder_goes_through_lfs_and_downloads_identically(hub_server: HubServer, tmp_path: Path) -> None:
    api = api_for(hub_server)
    folder = make_folder(tmp_path)
    api.create_repo("team/model")
    info = api.upload_folder(repo_id="team/model", folder_path=folder, commit_message="add weights")

    history = hub_server.commits("team/model")
    assert [c.title for c in history] == ["add weights", "initial commit"]
    assert info.oid == history[0].sha and len(info.oid) == 40 and int(info.oid, 16) >= 0
    assert hub_server.lfs_files("team/model") == {"weights.safetensors"}
    assert hub_server.request_count("lfs_upload") == 1
    stored = hub_server.files("team/model")
    for path in ("config.json", "nested/notes.txt", "weights.safetensors"):
        assert stored[path] == (folder / path).read_bytes()

    weights = hf_hub_download(
        "team/model",
        "weights.safetensors",
        endpoint=hub_server.endpoint,
        token=hub_server.token,
        cache_dir=tmp_path / "cache",
    )
    assert Path(weights).read_bytes() == (folder / "weights.safetensors").read_bytes()
    snapshot = Path(
        snapshot_download(
            "team/model",
            revision=info.oid,
            endpoint=hub_server.endpoint,
            token=hub_server.token,
            cache_dir=tmp_path / "cache2",
        )
    )
    assert snapshot.name == info.oid
    for path in ("config.json", "nested/notes.txt", "weights.safetensors"):
        assert (snapshot / path).read_bytes() == (folder / path).read_bytes()

    # An unchanged re-upload makes no commit; the client sees the same sha.
    again = api.upload_folder(repo_id="team/model", folder_path=folder, commit_message="again")
    assert again.oid == info.oid
    assert len(hub_server.commits("team/model")) == 2


def test_identical_lfs_files_in_one_commit_are_stored_once(hub_server: HubServer, tmp_path: Path) -> None:
    # Like the real Hub: LFS objects are deduplicated by oid, so the same bytes under two paths
    # (an adapter copied next to its checkpoint, two equal shards) are one object.
    api = api_for(hub_server)
    folder = tmp_path / "twins"
    folder.mkdir()
    payload = os.urandom(32 * 1024) + b"\0"
    for name in ("a.safetensors", "b.safetensors", "copy/a.safetensors"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(payload)
    api.create_repo("team/twins")
    info = api.upload_folder(repo_id="team/twins", folder_path=folder, commit_message="twins")

    assert info.oid == hub_server.commits("team/twins")[0].sha
    assert hub_server.lfs_files("team/twins") == {"a.safetensors", "b.safetensors", "copy/a.safetensors"}
    stored = hub_server.files("team/twins")
    assert all(stored[name] == payload for name in ("a.safetensors", "b.safetensors", "copy/a.safetensors"))
    assert len(hub_server.store.lfs_objects) == 1
    uploads = [r.status for r in hub_server.requests if r.route == "lfs_upload"]
    assert uploads and all(status == 200 for status in uploads), uploads
    # Uploading the same bytes again later (a new file) needs no upload at all.
    (folder / "c.safetensors").write_bytes(payload)
    api.upload_folder(repo_id="team/twins", folder_path=folder, commit_message="more")
    assert [r.status for r in hub_server.requests if r.route == "lfs_upload"] == uploads
    assert hub_server.files("team/twins")["c.safetensors"] == payload
    # A PUT nobody announced is still refused, even for bytes the store has.
    request = urllib.request.Request(f"{hub_server.endpoint}/_lfs/upload/{'0' * 64}", data=b"x", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403


def test_tree_paths_info_commits_and_ranged_reads(hub_server: HubServer, tmp_path: Path) -> None:
    api = api_for(hub_server)
    folder = make_folder(tmp_path)
    api.create_repo("team/browse")
    first = api.upload_folder(repo_id="team/browse", folder_path=folder, commit_message="one").oid
    (folder / "config.json").write_text('{"hidden_size": 128}\n')
    second = api.upload_folder(repo_id="team/browse", folder_path=folder, commit_message="two").oid

    top = {e.path for e in api.list_repo_tree("team/browse")}
    assert top == {".gitattributes", "config.json", "nested", "weights.safetensors"}
    files = {
        e.path: e for e in api.list_repo_tree("team/browse", recursive=True, expand=True) if isinstance(e, RepoFile)
    }
    last_commits = {path: entry.last_commit.oid if entry.last_commit else None for path, entry in files.items()}
    assert last_commits["nested/notes.txt"] == first and last_commits["config.json"] == second
    lfs = files["weights.safetensors"].lfs
    assert lfs is not None and lfs.size == (folder / "weights.safetensors").stat().st_size
    [info] = api.get_paths_info("team/browse", ["config.json"], revision=first)
    assert isinstance(info, RepoFile) and info.size == len('{"hidden_size": 64}\n')
    assert [c.title for c in api.list_repo_commits("team/browse")] == ["two", "one", "initial commit"]
    assert api.model_info("team/browse", revision=first).sha == first

    fs = HfFileSystem(endpoint=hub_server.endpoint, token=hub_server.token)
    with fs.open("team/browse/weights.safetensors", "rb") as handle:
        handle.seek(1000)
        assert handle.read(100) == (folder / "weights.safetensors").read_bytes()[1000:1100]

    assert api.file_exists("team/browse", "config.json")
    assert not api.file_exists("team/browse", "missing.bin")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(
            "team/browse",
            "missing.bin",
            endpoint=hub_server.endpoint,
            token=hub_server.token,
            cache_dir=tmp_path / "cache",
        )
    with pytest.raises(RevisionNotFoundError):
        api.model_info("team/browse", revision="no-such-branch")


def test_wrong_token_gets_401_and_writes_nothing(hub_server: HubServer, tmp_path: Path) -> None:
    api_for(hub_server).create_repo("team/locked")
    wrong = api_for(hub_server, token="hf_wrong_token_kubetune")
    with pytest.raises(HfHubHTTPError) as info:
        wrong.create_repo("team/other")
    assert info.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as info:
        wrong.upload_folder(repo_id="team/locked", folder_path=make_folder(tmp_path), commit_message="x")
    assert info.value.response.status_code == 401
    anonymous = api_for(hub_server, token=False)
    with pytest.raises(HfHubHTTPError) as info:
        anonymous.create_repo("team/anon")
    assert info.value.response.status_code == 401
    assert hub_server.repo_ids() == ["team/locked"]
    assert len(hub_server.commits("team/locked")) == 1


def test_read_only_token_gets_403_on_writes(hub_server: HubServer, tmp_path: Path) -> None:
    hub_server.add_token("hf_read_only_token_kubetune", write=False)
    api_for(hub_server).create_repo("team/ro")
    reader = api_for(hub_server, token="hf_read_only_token_kubetune")
    assert reader.model_info("team/ro").id == "team/ro"
    with pytest.raises(HfHubHTTPError) as info:
        reader.upload_folder(repo_id="team/ro", folder_path=make_folder(tmp_path), commit_message="x")
    assert info.value.response.status_code == 403


def test_private_repo_is_invisible_without_token(hub_server: HubServer, tmp_path: Path) -> None:
    api = api_for(hub_server)
    api.create_repo("team/secret", private=True)
    api.upload_folder(repo_id="team/secret", folder_path=make_folder(tmp_path), commit_message="add")
    assert hub_server.is_private("team/secret")
    assert api.model_info("team/secret").private is True

    anonymous = api_for(hub_server, token=False)
    with pytest.raises(RepositoryNotFoundError):
        anonymous.model_info("team/secret")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(
            "team/secret", "config.json", endpoint=hub_server.endpoint, token=False, cache_dir=tmp_path / "cache"
        )
    assert not anonymous.repo_exists("team/secret")

    api.update_repo_settings("team/secret", private=False)
    assert anonymous.model_info("team/secret").private is False


def test_injected_failures(hub_server: HubServer, tmp_path: Path) -> None:
    api = api_for(hub_server)
    folder = make_folder(tmp_path)
    api.create_repo("team/flaky")
    hub_server.fail_next_commits(1, status=503)
    with pytest.raises(HfHubHTTPError) as info:
        api.upload_folder(repo_id="team/flaky", folder_path=folder, commit_message="x")
    assert info.value.response.status_code == 503
    assert len(hub_server.commits("team/flaky")) == 1

    hub_server.drop_next("commit")
    with pytest.raises(Exception) as dropped:
        api.upload_folder(repo_id="team/flaky", folder_path=folder, commit_message="x")
    assert "disconnected" in str(dropped.value).lower()

    # The LFS object from the failed attempts is kept; the next attempt does not re-upload it.
    uploads_before = hub_server.request_count("lfs_upload")
    api.upload_folder(repo_id="team/flaky", folder_path=folder, commit_message="x")
    assert hub_server.request_count("lfs_upload") == uploads_before
    assert [c.title for c in hub_server.commits("team/flaky")] == ["x", "initial commit"]


def test_invalid_readme_metadata_is_rejected(hub_server: HubServer, tmp_path: Path) -> None:
    api = api_for(hub_server)
    api.create_repo("team/card")
    folder = tmp_path / "card"
    folder.mkdir()
    (folder / "README.md").write_text("---\ntags: [unclosed\n---\n# card\n")
    with pytest.raises(ValueError, match="Invalid metadata"):
        api.upload_folder(repo_id="team/card", folder_path=folder, commit_message="card")
    (folder / "README.md").write_text("---\ntags: [kubetune]\nlibrary_name: peft\n---\n# card\n")
    api.upload_folder(repo_id="team/card", folder_path=folder, commit_message="card")
    info = api.model_info("team/card")
    assert info.card_data is not None and info.card_data.tags == ["kubetune"]
    assert info.library_name == "peft"


def test_datasets_load_dataset_reads_a_dataset_repo(hub_server: HubServer, tmp_path: Path) -> None:
    # `datasets` has no endpoint argument: it reads HF_ENDPOINT at import, so a fresh process.
    import json
    import subprocess
    import sys

    api = api_for(hub_server)
    api.create_repo("team/rows", repo_type="dataset", private=True)
    rows = "".join(json.dumps({"text": f"row {i}", "label": i % 3}) + "\n" for i in range(25))
    api.upload_file(
        path_or_fileobj=rows.encode(),
        path_in_repo="data/train.jsonl",
        repo_id="team/rows",
        repo_type="dataset",
        commit_message="rows",
    )
    script = (
        "import json, datasets\n"
        "ds = datasets.load_dataset('team/rows', split='train')\n"
        "print(json.dumps({'n': len(ds), 'third': ds[2]}))\n"
    )
    env = {**os.environ, **hub_server.client_env(), "HF_HOME": str(tmp_path / "hf-home")}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"n": 25, "third": {"text": "row 2", "label": 2}}
    assert hub_server.files("team/rows", repo_type="dataset")["data/train.jsonl"] == rows.encode()
