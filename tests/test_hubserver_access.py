"""The Hub test server's access rules (token roles, fine-grained scopes, orgs, gated repos),
exercised through the real huggingface_hub client, so the preflight is tested against what
the client really raises."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

from support.hubaccess import READ, WRITE
from support.hubserver import HubServer, hub_server_fixture  # noqa: F401


def api_for(server: HubServer, token: str | bool | None = None) -> HfApi:
    return HfApi(endpoint=server.endpoint, token=server.token if token is None else token)


def upload_config(server: HubServer, repo: str, *, private: bool = False) -> None:
    api = api_for(server)
    api.create_repo(repo, private=private)
    api.upload_file(path_or_fileobj=b'{"hidden_size": 64}', path_in_repo="config.json", repo_id=repo)
    api.upload_file(path_or_fileobj=b"# card\n", path_in_repo="README.md", repo_id=repo)


def test_whoami_reports_the_role_of_each_kind_of_token(hub_server: HubServer) -> None:
    hub_server.add_token("hf_reader", write=False)
    hub_server.add_token("hf_org_writer", orgs={"team": "write", "guests": "read"})
    hub_server.add_fine_grained_token("hf_fine", {hub_server.user: {READ, WRITE}, "team/one": {READ}},
                                      can_read_gated=False)
    assert api_for(hub_server).whoami()["auth"]["accessToken"]["role"] == "write"
    assert api_for(hub_server, "hf_reader").whoami()["auth"]["accessToken"]["role"] == "read"
    orgs = api_for(hub_server, "hf_org_writer").whoami()["orgs"]
    assert {(o["name"], o["roleInOrg"]) for o in orgs} == {("team", "write"), ("guests", "read")}

    fine = api_for(hub_server, "hf_fine").whoami()["auth"]["accessToken"]
    assert fine["role"] == "fineGrained" and fine["fineGrained"]["canReadGatedRepos"] is False
    scoped = {s["entity"]["name"]: (s["entity"]["type"], set(s["permissions"])) for s in fine["fineGrained"]["scoped"]}
    assert scoped == {hub_server.user: ("user", {READ, WRITE}), "team/one": ("model", {READ})}
    with pytest.raises(HfHubHTTPError) as info:
        api_for(hub_server, "hf_not_a_token").whoami()
    assert info.value.response.status_code == 401


def test_write_rules_follow_role_org_and_scope(hub_server: HubServer) -> None:
    hub_server.add_token("hf_org_writer", orgs={"team": "write", "guests": "read"})
    hub_server.add_fine_grained_token("hf_fine", {"team/allowed": {READ, WRITE}, "team/readonly": {READ}})
    for repo in ("team/allowed", "team/readonly"):
        api_for(hub_server).create_repo(repo)

    writer = api_for(hub_server, "hf_org_writer")
    assert writer.create_repo("team/new").repo_id == "team/new"
    writer.auth_check("team/new", write=True)
    with pytest.raises(HfHubHTTPError) as info:
        writer.create_repo("guests/nope")
    assert info.value.response.status_code == 403

    hub_server.add_token("hf_contributor", user="carl", orgs={"team": "contributor"})
    contributor = api_for(hub_server, "hf_contributor")
    contributor.create_repo("team/carls")
    contributor.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="team/carls")
    with pytest.raises(HfHubHTTPError) as info:
        contributor.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="team/allowed")
    assert info.value.response.status_code == 403

    fine = api_for(hub_server, "hf_fine")
    fine.auth_check("team/allowed", write=True)
    fine.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="team/allowed")
    with pytest.raises(HfHubHTTPError) as info:
        fine.auth_check("team/readonly", write=True)
    assert info.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as info:
        fine.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="team/readonly")
    assert info.value.response.status_code == 403
    assert "x.txt" not in hub_server.files("team/readonly")


def test_a_private_repo_is_hidden_from_tokens_without_access(hub_server: HubServer) -> None:
    upload_config(hub_server, "team/private", private=True)
    hub_server.add_token("hf_outsider", orgs={})
    hub_server.add_fine_grained_token("hf_scoped", {"team/private": {READ}})
    with pytest.raises(RepositoryNotFoundError):
        api_for(hub_server, "hf_outsider").model_info("team/private")
    assert api_for(hub_server, "hf_scoped").model_info("team/private").id == "team/private"


def test_a_gated_repo_serves_its_card_to_all_and_its_files_to_granted_users(hub_server: HubServer,
                                                                             tmp_path: Path) -> None:
    upload_config(hub_server, "vendor/gated")
    hub_server.gate("vendor/gated", granted=("friend",))
    hub_server.add_token("hf_stranger", user="stranger", orgs={})
    hub_server.add_token("hf_friend", user="friend", orgs={})
    stranger = api_for(hub_server, "hf_stranger")

    info = stranger.model_info("vendor/gated")
    assert info.gated == "manual"
    card = hf_hub_download("vendor/gated", "README.md", endpoint=hub_server.endpoint, token="hf_stranger",
                           cache_dir=tmp_path / "a")
    assert Path(card).read_bytes() == b"# card\n"
    with pytest.raises(GatedRepoError) as gated:
        hf_hub_download("vendor/gated", "config.json", endpoint=hub_server.endpoint, token="hf_stranger",
                        cache_dir=tmp_path / "b")
    assert gated.value.response.status_code == 403
    with pytest.raises(GatedRepoError) as anonymous:
        hf_hub_download("vendor/gated", "config.json", endpoint=hub_server.endpoint, token=False,
                        cache_dir=tmp_path / "c")
    assert anonymous.value.response.status_code == 401
    with pytest.raises(GatedRepoError):
        stranger.auth_check("vendor/gated")

    api_for(hub_server, "hf_friend").auth_check("vendor/gated")
    config = hf_hub_download("vendor/gated", "config.json", endpoint=hub_server.endpoint, token="hf_friend",
                             cache_dir=tmp_path / "d")
    assert Path(config).read_bytes() == b'{"hidden_size": 64}'
