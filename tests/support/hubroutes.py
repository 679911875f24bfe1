"""The Hub's HTTP API, as the test server answers it: one function per route.

`build_routes(hub)` returns (method, path pattern, route name, handler) rows; handlers
take a parsed `Request` and return a `Response` or raise `HttpError`. Shapes follow
what huggingface_hub (hf_api.py, _commit_api.py, lfs.py, file_download.py) sends and
expects. The HTTP plumbing, faults and inspection live in `hubserver.py`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

import yaml

from support.hubaccess import UNGATED_FILES, TokenInfo
from support.hubstore import REPO_TYPES, Commit, CommitError, FileChange, Repo, front_matter, wants_lfs

if TYPE_CHECKING:
    from support.hubserver import HubServer

# The real Hub's wording; the client maps a 401 *without* it on repo URLs to RepositoryNotFoundError.
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"

_TYPE_PLURAL = "(?P<type>models|datasets|spaces)"
_REPO = "(?P<repo>[^/]+/[^/]+)"
_URL_PREFIX = "(?:(?P<prefix>datasets|spaces)/)?"


class HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.headers = status, code, headers or {}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str]
    token: TokenInfo | None

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_response(data: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})


def _singular(plural_or_prefix: str | None) -> str:
    return "model" if not plural_or_prefix else plural_or_prefix.rstrip("s")


def _commit_or_404(repo: Repo, revision: str) -> Commit:
    commit = repo.resolve(revision)
    if commit is None:
        raise HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
    return commit


# -- route handlers -----------------------------------------------------------------------
def build_routes(hub: HubServer) -> list[tuple[str, re.Pattern[str], str, Callable[[Request], Response]]]:
    def whoami(req: Request) -> Response:
        if req.token is None:
            raise HttpError(401, INVALID_CREDENTIALS)
        return json_response(req.token.whoami())

    def create_repo(req: Request) -> Response:
        token = hub.require_token(req)
        payload = req.json() or {}
        repo_type = payload.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise HttpError(400, f"invalid repo type {repo_type!r}")
        repo_id = f"{payload.get('organization') or token.user}/{payload['name']}"
        hub.require_write(req, repo_id, repo_type)
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        repo = hub.store.create(repo_type, repo_id, private=private, author=token.user)
        if repo is None:
            existing = hub.store.get(repo_type, repo_id)
            assert existing is not None
            # create_repo(exist_ok=True) reads "url" from the 409 body.
            return json_response({"error": "You already created this repo", "url": hub.repo_url(existing)}, 409)
        return json_response({"url": hub.repo_url(repo), "name": repo_id, "id": repo_id})

    def delete_repo(req: Request) -> Response:
        token = hub.require_token(req)
        payload = req.json() or {}
        repo_id = f"{payload.get('organization') or token.user}/{payload['name']}"
        hub.require_write(req, repo_id, payload.get("type") or "model")
        if not hub.store.delete(payload.get("type") or "model", repo_id):
            raise HttpError(404, "Repository not found", "RepoNotFound")
        return json_response({})

    def settings(req: Request) -> Response:
        repo = hub.writable_repo(req, _singular(req.params["type"]), req.params["repo"])
        payload = req.json() or {}
        if "private" in payload:
            repo.private = bool(payload["private"])
        if "visibility" in payload:
            repo.private = payload["visibility"] == "private"
        if "gated" in payload:
            repo.gated = payload["gated"] or None  # "auto", "manual", or false
        return json_response({"private": repo.private, "gated": repo.gated or False})

    def repo_info(req: Request) -> Response:
        repo_type = _singular(req.params["type"])
        repo = hub.readable_repo(req, repo_type, req.params["repo"])
        commit = _commit_or_404(repo, unquote(req.params.get("rev") or "main"))
        card: dict[str, Any] = {}
        readme = commit.tree.get("README.md")
        if readme is not None:
            try:
                card = front_matter(readme.data.decode()) or {}
            except (ValueError, UnicodeDecodeError):
                card = {}
        siblings = [
            {
                "rfilename": path,
                "size": blob.size,
                "blobId": blob.oid,
                **(
                    {"lfs": {"sha256": blob.sha256, "size": blob.size, "pointerSize": len(blob.pointer)}}
                    if blob.lfs
                    else {}
                ),
            }
            for path, blob in sorted(commit.tree.items())
        ]
        tags = [str(t) for t in card.get("tags") or []]
        if card.get("library_name"):
            tags.append(str(card["library_name"]))
        info = {
            "_id": repo.repo_id,
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.sha,
            "lastModified": commit.date,
            "createdAt": commit.date,
            "private": repo.private,
            "gated": repo.gated or False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": tags,
            "cardData": card,
            "siblings": siblings,
            "library_name": card.get("library_name"),
            "pipeline_tag": card.get("pipeline_tag"),
        }
        return json_response(info)

    def tree_entry(repo: Repo, commit: Commit, path: str, expand: bool) -> dict[str, Any]:
        blob = commit.tree[path]
        entry: dict[str, Any] = {"type": "file", "oid": blob.oid, "size": blob.size, "path": path}
        if blob.lfs:
            entry["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": len(blob.pointer)}
        if expand:
            last = repo.last_commit_touching(path, commit.sha)
            if last is not None:
                entry["lastCommit"] = {"id": last.sha, "title": last.title, "date": last.date}
        return entry

    def folder_entry(commit: Commit, path: str) -> dict[str, Any]:
        # A stand-in tree id: stable per (commit, folder), which is all the client relies on.
        oid = hashlib.sha1(f"{commit.sha}:{path}".encode()).hexdigest()
        return {"type": "directory", "oid": oid, "size": 0, "path": path}

    def tree(req: Request) -> Response:
        repo = hub.readable_repo(req, _singular(req.params["type"]), req.params["repo"])
        commit = _commit_or_404(repo, unquote(req.params["rev"]))
        base = unquote(req.params.get("path") or "").strip("/")
        recursive = req.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        expand = req.query.get("expand", ["false"])[0].lower() in ("1", "true")
        prefix = f"{base}/" if base else ""
        files, folders = [], set()
        for path in sorted(commit.tree):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :].split("/")
            for depth in range(1, len(rest)):
                if recursive or depth == 1:
                    folders.add(prefix + "/".join(rest[:depth]))
            if recursive or len(rest) == 1:
                files.append(tree_entry(repo, commit, path, expand))
        if base and not files and not folders:
            raise HttpError(404, f"{base} does not exist on {req.params['rev']}", "EntryNotFound")
        return json_response([folder_entry(commit, p) for p in sorted(folders)] + files)

    def paths_info(req: Request) -> Response:
        repo = hub.readable_repo(req, _singular(req.params["type"]), req.params["repo"])
        commit = _commit_or_404(repo, unquote(req.params["rev"]))
        form = parse_qs(req.body.decode())
        expand = form.get("expand", ["False"])[0].lower() in ("1", "true")
        out = []
        for path in (p.strip("/") for p in form.get("paths", [])):
            if path in commit.tree:
                out.append(tree_entry(repo, commit, path, expand))
            elif any(p.startswith(path + "/") for p in commit.tree):
                out.append(folder_entry(commit, path))
        return json_response(out)

    def commits(req: Request) -> Response:
        repo = hub.readable_repo(req, _singular(req.params["type"]), req.params["repo"])
        rev = unquote(req.params["rev"])
        _commit_or_404(repo, rev)
        return json_response(
            [
                {
                    "id": c.sha,
                    "title": c.title,
                    "message": c.message,
                    "date": c.date,
                    "authors": [{"user": c.author, "avatar": None}],
                }
                for c in repo.history(rev)
            ]
        )

    def preupload(req: Request) -> Response:
        repo = hub.writable_repo(req, _singular(req.params["type"]), req.params["repo"])
        head = repo.resolve(unquote(req.params["rev"]))
        files = []
        for item in (req.json() or {}).get("files", []):
            sample = base64.b64decode(item.get("sample", ""))
            lfs = wants_lfs(item["path"], int(item.get("size", 0)), sample)
            existing = head.tree.get(item["path"]) if head else None
            oid = None
            if existing is not None:
                oid = existing.sha256 if existing.lfs else existing.oid
            files.append(
                {
                    "path": item["path"],
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": oid,
                }
            )
        return json_response({"files": files, "commitOid": head.sha if head else None})

    def lfs_batch(req: Request) -> Response:
        hub.writable_repo(req, _singular(req.params.get("prefix")), req.params["repo"])
        payload = req.json() or {}
        if payload.get("operation") != "upload":
            raise HttpError(400, "only the upload operation is supported")
        objects = []
        for obj in payload.get("objects", []):
            oid, size = str(obj["oid"]), int(obj["size"])
            entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if oid not in hub.store.lfs_objects:  # no "actions" = already stored, client skips it
                with hub._lock:
                    hub._pending_lfs.add(oid)
                entry["actions"] = {
                    "upload": {"href": f"{hub.endpoint}/_lfs/upload/{oid}"},
                    "verify": {"href": f"{hub.endpoint}/_lfs/verify/{oid}"},
                }
            objects.append(entry)
        return Response(
            200,
            json.dumps({"transfer": "basic", "objects": objects}).encode(),
            {"Content-Type": "application/vnd.git-lfs+json"},
        )

    def lfs_upload(req: Request) -> Response:
        oid = req.params["oid"]
        with hub._lock:
            announced = oid in hub._pending_lfs
        # The same bytes under two paths of one commit are announced twice and PUT twice; the
        # Hub stores objects by oid, so a second PUT of a stored object is fine. (The store
        # gets the object before it leaves the pending set: one of the two always holds it.)
        announced = announced or oid in hub.store.lfs_objects
        if not announced:
            raise HttpError(403, "upload was not announced through the LFS batch endpoint")
        if hashlib.sha256(req.body).hexdigest() != oid:
            raise HttpError(400, "content does not match its sha256 oid")
        with hub.store.lock:
            hub.store.lfs_objects[oid] = req.body
        with hub._lock:
            hub._pending_lfs.discard(oid)
        return Response(200)

    def lfs_verify(req: Request) -> Response:
        payload = req.json() or {}
        data = hub.store.lfs_objects.get(req.params["oid"])
        if data is None or len(data) != int(payload.get("size", len(data))):
            raise HttpError(404, "object not found")
        return json_response({})

    def commit(req: Request) -> Response:
        repo_type = _singular(req.params["type"])
        repo = hub.writable_repo(req, repo_type, req.params["repo"])
        assert req.token is not None
        header: dict[str, Any] = {}
        changes: list[FileChange] = []
        for line in req.body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
            elif key == "file":
                changes.append(FileChange("file", value["path"], base64.b64decode(value["content"])))
            elif key == "lfsFile":
                changes.append(FileChange("lfsFile", value["path"], sha256=value["oid"]))
            elif key in ("deletedFile", "deletedFolder"):
                changes.append(FileChange(key, value["path"]))
            else:
                raise HttpError(400, f"unsupported commit operation {key!r}")
        if req.query.get("create_pr"):
            raise HttpError(400, "pull requests are not supported by the test hub")
        try:
            new = hub.store.commit(
                repo,
                unquote(req.params["rev"]),
                changes,
                title=header.get("summary") or "",
                message=header.get("description") or "",
                author=req.token.user,
                parent_commit=header.get("parentCommit"),
            )
        except CommitError as e:
            raise HttpError(e.status, str(e), e.code) from e
        return json_response(
            {
                "success": True,
                "commitOid": new.sha,
                "commitUrl": f"{hub.repo_url(repo)}/commit/{new.sha}",
                "hookOutput": "",
                "pullRequestUrl": None,
            }
        )

    def validate_yaml(req: Request) -> Response:
        content = (req.json() or {}).get("content", "")
        try:
            front_matter(content)
        except (ValueError, yaml.YAMLError) as e:
            return json_response({"errors": [{"message": f"invalid YAML metadata: {e}"}]}, 400)
        return json_response({"warnings": []})

    def auth_check(req: Request) -> Response:
        repo_type = _singular(req.params["type"])
        if req.params.get("write"):
            hub.writable_repo(req, repo_type, req.params["repo"])
        else:
            hub.check_gate(req, hub.readable_repo(req, repo_type, req.params["repo"]))
        return json_response({})

    def resolve(req: Request) -> Response:
        repo = hub.readable_repo(req, _singular(req.params.get("prefix")), req.params["repo"])
        commit = _commit_or_404(repo, unquote(req.params["rev"]))
        path = unquote(req.params["path"])
        if path not in UNGATED_FILES:
            hub.check_gate(req, repo)
        blob = commit.tree.get(path)
        if blob is None:
            raise HttpError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.sha})
        headers = {
            "X-Repo-Commit": commit.sha,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if blob.lfs:
            headers.update(
                {
                    "ETag": f'"{blob.sha256}"',
                    "X-Linked-Etag": f'"{blob.sha256}"',
                    "X-Linked-Size": str(blob.size),
                }
            )
        else:
            headers["ETag"] = f'"{blob.oid}"'
        data = blob.data
        range_header = req.headers.get("range")
        if range_header:
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header.strip())
            if match is None or not (match.group(1) or match.group(2)):
                raise HttpError(416, "invalid range", headers={"Content-Range": f"bytes */{len(data)}"})
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), len(data) - 1) if match.group(2) else len(data) - 1
            else:
                start, end = max(len(data) - int(match.group(2)), 0), len(data) - 1
            if start >= len(data) and len(data) > 0:
                raise HttpError(416, "range not satisfiable", headers={"Content-Range": f"bytes */{len(data)}"})
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return Response(206, data[start : end + 1], headers)
        return Response(200, data, headers)

    api = f"^/api/{_TYPE_PLURAL}/{_REPO}"
    table: list[tuple[str, str, str, Callable[[Request], Response]]] = [
        ("GET", "^/api/whoami-v2$", "whoami", whoami),
        ("POST", "^/api/repos/create$", "create_repo", create_repo),
        ("DELETE", "^/api/repos/delete$", "delete_repo", delete_repo),
        ("POST", "^/api/validate-yaml$", "validate_yaml", validate_yaml),
        ("PUT", f"{api}/settings$", "settings", settings),
        ("GET", f"{api}$", "repo_info", repo_info),
        ("GET", f"{api}/revision/(?P<rev>[^/]+)$", "repo_info", repo_info),
        ("GET", f"{api}/auth-check(?P<write>/write)?$", "auth_check", auth_check),
        ("GET", f"{api}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$", "tree", tree),
        ("POST", f"{api}/paths-info/(?P<rev>[^/]+)$", "paths_info", paths_info),
        ("GET", f"{api}/commits/(?P<rev>[^/]+)$", "commits", commits),
        ("POST", f"{api}/preupload/(?P<rev>[^/]+)$", "preupload", preupload),
        ("POST", f"{api}/commit/(?P<rev>[^/]+)$", "commit", commit),
        ("POST", f"^/{_URL_PREFIX}{_REPO}\\.git/info/lfs/objects/batch$", "lfs_batch", lfs_batch),
        ("PUT", "^/_lfs/upload/(?P<oid>[0-9a-f]{64})$", "lfs_upload", lfs_upload),
        ("POST", "^/_lfs/verify/(?P<oid>[0-9a-f]{64})$", "lfs_verify", lfs_verify),
        ("GET", f"^/{_URL_PREFIX}{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$", "resolve", resolve),
    ]
    return [(method, re.compile(pattern), name, fn) for method, pattern, name, fn in table]
