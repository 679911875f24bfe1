"""A Hugging Face Hub-compatible HTTP server on loopback, for tests.

The real `huggingface_hub` client (create_repo, upload_folder/create_commit with LFS,
hf_hub_download, snapshot_download) and therefore `transformers`/`peft`
`from_pretrained(repo_id)` work against it. Repositories live in memory
(`hubstore.py`). Point the client at it with `HfApi(endpoint=server.endpoint,
token=server.token)`, or in a subprocess with `server.client_env()` (huggingface_hub
reads HF_ENDPOINT at import time). Xet is not spoken: HF_HUB_DISABLE_XET=1 must be set
before huggingface_hub is imported (tests/conftest.py does).

Use the `hub_server` fixture (`from support.hubserver import hub_server_fixture  # noqa: F401`)
or `start_hub_server()` / `.stop()`. Faults for tests: `fail_next_commits(n)`,
`fail_next(route, n, status)`, `drop_next(route, n)` (close without answering) and
`lose_next_commit_responses(n)` (commit applied, answer lost); `clear_faults()`.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from support.hubaccess import TokenInfo, gated_message
from support.hubroutes import (
    INVALID_CREDENTIALS,
    HttpError,
    Request,
    Response,
    build_routes,
    json_response,
)
from support.hubstore import HubStore, Repo

TEST_TOKEN = "hf_test_token_kubetune"
TEST_USER = "kubetune-test"


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    route: str
    status: int


@dataclass
class Fault:
    kind: str  # "status" (answer `status`), "drop" (close without answering), "lose" (apply, then drop)
    status: int = 500


class _DropConnection(Exception):
    """Close the socket without writing an answer (a connection error for the client)."""


class HubServer:
    """The server object tests hold: endpoint, token, inspection and fault injection."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.store = HubStore()
        self.token = TEST_TOKEN
        self.user = TEST_USER
        self.tokens: dict[str, TokenInfo] = {TEST_TOKEN: TokenInfo(TEST_USER, write=True)}
        self.requests: list[RequestRecord] = []
        self.internal_errors: list[str] = []
        self._faults: dict[str, deque[Fault]] = {}
        self._pending_lfs: set[str] = set()
        self._lock = threading.Lock()
        self._routes = build_routes(self)
        handler = type("HubRequestHandler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self.endpoint = f"http://{host}:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-test-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # -- set-up and fault injection -------------------------------------------------
    def add_token(self, token: str, *, user: str = TEST_USER, write: bool = True,
                  orgs: dict[str, str] | None = None) -> None:
        """A classic token: `write` False makes it a read token; `orgs` (org -> read/write/admin)
        limits the namespaces it may write (None: any)."""
        self.tokens[token] = TokenInfo(user, write, orgs=orgs)

    def add_fine_grained_token(self, token: str, scopes: dict[str, set[str]], *, user: str = TEST_USER,
                               orgs: dict[str, str] | None = None, can_read_gated: bool = True) -> None:
        """A fine-grained token: `scopes` maps a user, org or repo id to permissions
        (hubaccess.READ, hubaccess.WRITE)."""
        self.tokens[token] = TokenInfo(user, write=False, fine_grained=True,
                                       scopes={k: frozenset(v) for k, v in scopes.items()}, orgs=orgs,
                                       can_read_gated=can_read_gated)

    def gate(self, repo: str, *, granted: tuple[str, ...] = (), mode: str = "manual",
             repo_type: str = "model") -> None:
        """Make a repo gated: its files are served only to the `granted` users."""
        found = self._repo(repo, repo_type)
        found.gated = mode
        found.granted = set(granted)

    def fail_next(self, route: str, n: int = 1, status: int = 500) -> None:
        with self._lock:
            self._faults.setdefault(route, deque()).extend(Fault("status", status) for _ in range(n))

    def drop_next(self, route: str, n: int = 1) -> None:
        with self._lock:
            self._faults.setdefault(route, deque()).extend(Fault("drop") for _ in range(n))

    def fail_next_commits(self, n: int, status: int = 500) -> None:
        self.fail_next("commit", n, status)

    def lose_next_commit_responses(self, n: int = 1) -> None:
        with self._lock:
            self._faults.setdefault("commit", deque()).extend(Fault("lose") for _ in range(n))

    def clear_faults(self) -> None:
        """Forget faults not yet used (for servers shared by several tests)."""
        with self._lock:
            self._faults.clear()

    def take_fault(self, route: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(route)
            return queue.popleft() if queue else None

    # -- inspection -----------------------------------------------------------------
    def _repo(self, repo: str, repo_type: str) -> Repo:
        found = self.store.get(repo_type, repo)
        if found is None:
            raise KeyError(f"no {repo_type} repo {repo!r} on the test hub")
        return found

    def repo_ids(self, repo_type: str = "model") -> list[str]:
        return sorted(rid for (rtype, rid) in self.store.repos if rtype == repo_type)

    def files(self, repo: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        commit = self._repo(repo, repo_type).resolve(revision)
        return {} if commit is None else {path: blob.data for path, blob in commit.tree.items()}

    def lfs_files(self, repo: str, revision: str = "main", repo_type: str = "model") -> set[str]:
        commit = self._repo(repo, repo_type).resolve(revision)
        return set() if commit is None else {path for path, blob in commit.tree.items() if blob.lfs}

    def commits(self, repo: str, revision: str = "main", repo_type: str = "model") -> list[Any]:
        """Commits newest first (`hubstore.Commit`: sha, parent, title, message, tree)."""
        return self._repo(repo, repo_type).history(revision)

    def is_private(self, repo: str, repo_type: str = "model") -> bool:
        return self._repo(repo, repo_type).private

    def request_count(self, route: str) -> int:
        return sum(1 for r in self.requests if r.route == route)

    def client_env(self, token: str | None = None) -> dict[str, str]:
        """Environment for a subprocess whose huggingface_hub should talk to this server."""
        return {
            "HF_ENDPOINT": self.endpoint,
            "HF_TOKEN": token if token is not None else self.token,
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }

    # -- access rules -----------------------------------------------------------------
    def readable_repo(self, req: Request, repo_type: str, repo_id: str) -> Repo:
        repo = self.store.get(repo_type, repo_id)
        hidden = repo is not None and repo.private and (req.token is None or not req.token.may_read_private(repo_id))
        if repo is None or hidden:
            # Like the Hub: callers without access cannot tell private from missing.
            status = 404 if req.token is not None else 401
            raise HttpError(status, "Repository not found", "RepoNotFound")
        return repo

    def writable_repo(self, req: Request, repo_type: str, repo_id: str) -> Repo:
        self.require_write(req, repo_id, repo_type)
        return self.readable_repo(req, repo_type, repo_id)

    @staticmethod
    def require_token(req: Request) -> TokenInfo:
        if req.token is None:
            raise HttpError(401, "You must be authenticated to do this")
        return req.token

    def require_write(self, req: Request, repo_id: str, repo_type: str = "model") -> TokenInfo:
        token = self.require_token(req)
        existing = self.store.get(repo_type, repo_id)
        if not token.may_write(repo_id, existing.creator if existing is not None else None):
            kind = {"read": "read-only token", "fineGrained": "no repo.write scope for it"}.get(token.role, "")
            raise HttpError(403, f"You don't have the rights to write to {repo_id}" + (f" ({kind})" if kind else ""))
        return token

    def check_gate(self, req: Request, repo: Repo) -> None:
        """Refuse a gated repo's files to a user whose access was not granted, as the Hub does."""
        if repo.gated is None:
            return
        token = req.token
        owner = token is not None and token.may_write(repo.repo_id, repo.creator)
        granted = token is not None and token.user in repo.granted and token.can_read_gated
        if owner or granted:
            return
        message = gated_message(repo.repo_type, repo.repo_id, self.repo_url(repo), token is not None)
        raise HttpError(401 if token is None else 403, message, "GatedRepo")

    def repo_url(self, repo: Repo) -> str:
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        return f"{self.endpoint}/{prefix}{repo.repo_id}"


# -- HTTP plumbing --------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: requests are recorded instead
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _token(self) -> TokenInfo | None:
        value = self.headers.get("Authorization", "")
        if not value:
            return None
        scheme, _, secret = value.partition(" ")
        info = self.hub.tokens.get(secret.strip()) if scheme.lower() == "bearer" else None
        if info is None:
            raise HttpError(401, INVALID_CREDENTIALS)
        return info

    def _dispatch(self) -> None:
        # Read the whole body first, whatever the answer: an unread body breaks keep-alive.
        body = self._read_body()
        url = urlsplit(self.path)
        method = "GET" if self.command == "HEAD" else self.command
        route, response = "unknown", Response(404, b'{"error":"no such route on the test hub"}')
        try:
            for route_method, pattern, name, fn in self.hub._routes:
                match = pattern.match(url.path) if route_method == method else None
                if match is None:
                    continue
                route = name
                fault = self.hub.take_fault(name)
                req = Request(
                    method,
                    url.path,
                    parse_qs(url.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    {k: v for k, v in match.groupdict().items() if v is not None},
                    self._token(),
                )
                if fault is not None and fault.kind == "drop":
                    raise _DropConnection()
                if fault is not None and fault.kind == "status":
                    raise HttpError(fault.status, f"injected failure ({fault.status})")
                response = fn(req)
                if fault is not None and fault.kind == "lose":
                    raise _DropConnection()
                break
        except _DropConnection:
            self.hub.requests.append(RequestRecord(self.command, url.path, route, 0))
            self.close_connection = True
            return
        except HttpError as e:
            headers = {"X-Error-Message": str(e), **({"X-Error-Code": e.code} if e.code else {}), **e.headers}
            response = json_response({"error": str(e)}, e.status, headers)
        except Exception as e:  # a bug in this server: make it visible to the test
            self.hub.internal_errors.append(f"{self.command} {url.path}: {e!r}")
            response = json_response({"error": f"test hub internal error: {e!r}"}, 500)
        self.hub.requests.append(RequestRecord(self.command, url.path, route, response.status))
        self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        headers = {"Content-Type": "application/json", **response.headers}
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":  # HEAD answers carry headers only
            self.wfile.write(response.body)


def start_hub_server() -> HubServer:
    return HubServer()


@pytest.fixture(name="hub_server")
def hub_server_fixture() -> Iterator[HubServer]:
    server = start_hub_server()
    try:
        yield server
    finally:
        server.stop()
    assert not server.internal_errors, f"the test hub server failed internally: {server.internal_errors}"
