"""In-memory repositories for the Hub test server: blobs, commits, branches.

Pure data, no HTTP: `hubserver.py` maps the Hub's routes onto these objects. Commit
shas and blob oids are computed the way git computes them where the client can tell
(blob oid = git sha1 of the content or of the LFS pointer), so the client's
"file unchanged" checks behave as against the real Hub.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field

import yaml

REPO_TYPES = ("model", "dataset", "space")
# Paths the real Hub's default .gitattributes sends to LFS (a representative subset).
LFS_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".h5",
    ".msgpack",
    ".onnx",
    ".gguf",
    ".parquet",
    ".arrow",
    ".npy",
    ".npz",
    ".pkl",
    ".pickle",
    ".zip",
    ".gz",
    ".tar",
    ".zst",
    ".model",
)
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
DEFAULT_GITATTRIBUTES = "".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in LFS_SUFFIXES)


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def wants_lfs(path: str, size: int, sample: bytes) -> bool:
    """The Hub's preupload decision: by .gitattributes pattern, size, or binary content."""
    return path.endswith(LFS_SUFFIXES) or size >= LFS_SIZE_THRESHOLD or b"\0" in sample


def front_matter(text: str) -> dict[str, object] | None:
    """The YAML metadata block of a README.md, None when there is none; raises on invalid YAML."""
    if not text.startswith("---"):
        return None
    end = text.find("\n---", 3)
    if end < 0:
        return None
    data = yaml.safe_load(text[3:end])
    if data is not None and not isinstance(data, dict):
        raise ValueError("metadata must be a YAML mapping")
    return data or {}


@dataclass(frozen=True)
class Blob:
    data: bytes
    lfs: bool

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def pointer(self) -> bytes:
        return lfs_pointer(self.sha256, self.size)

    @property
    def oid(self) -> str:
        return git_blob_oid(self.pointer if self.lfs else self.data)


@dataclass(frozen=True)
class Commit:
    sha: str
    parent: str | None
    title: str
    message: str
    author: str
    timestamp: float
    tree: dict[str, Blob]

    @property
    def date(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(self.timestamp))


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    created: float
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    creator: str = ""  # the user who created it
    gated: str | None = None  # "auto" or "manual": file contents need granted access
    granted: set[str] = field(default_factory=set)  # users whose access to a gated repo was granted

    def resolve(self, revision: str) -> Commit | None:
        """A branch name or a full commit sha, as the Hub accepts in URLs."""
        sha = self.branches.get(revision, revision)
        return self.commits.get(sha)

    def history(self, revision: str) -> list[Commit]:
        """Commits reachable from `revision`, newest first."""
        out: list[Commit] = []
        commit = self.resolve(revision)
        while commit is not None:
            out.append(commit)
            commit = self.commits.get(commit.parent) if commit.parent else None
        return out

    def last_commit_touching(self, path: str, revision: str) -> Commit | None:
        history = self.history(revision)
        for commit, parent in zip(history, [*history[1:], None], strict=True):
            here = commit.tree.get(path)
            before = parent.tree.get(path) if parent else None
            if here is not None and (before is None or before.oid != here.oid):
                return commit
        return None


class CommitError(Exception):
    """A commit the server refuses; `status` and `code` become the HTTP answer."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass
class FileChange:
    """One line of the commit NDJSON, already decoded."""

    kind: str  # "file" | "lfsFile" | "deletedFile" | "deletedFolder"
    path: str
    data: bytes = b""
    sha256: str = ""


class HubStore:
    """All repositories of one server, plus the LFS object store. Thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self._counter = 0

    def get(self, repo_type: str, repo_id: str) -> Repo | None:
        with self.lock:
            return self.repos.get((repo_type, repo_id))

    def create(self, repo_type: str, repo_id: str, *, private: bool, author: str) -> Repo | None:
        """A new repo with an initial commit holding .gitattributes; None when it exists."""
        with self.lock:
            if (repo_type, repo_id) in self.repos:
                return None
            repo = Repo(repo_id=repo_id, repo_type=repo_type, private=private, created=time.time(), creator=author)
            self.repos[(repo_type, repo_id)] = repo
            initial = [FileChange("file", ".gitattributes", DEFAULT_GITATTRIBUTES.encode())]
            self.commit(repo, "main", initial, title="initial commit", message="", author=author)
            return repo

    def delete(self, repo_type: str, repo_id: str) -> bool:
        with self.lock:
            return self.repos.pop((repo_type, repo_id), None) is not None

    def commit(
        self,
        repo: Repo,
        branch: str,
        changes: list[FileChange],
        *,
        title: str,
        message: str,
        author: str,
        parent_commit: str | None = None,
    ) -> Commit:
        with self.lock:
            head_sha = repo.branches.get(branch)
            if head_sha is None and repo.branches:
                raise CommitError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            if parent_commit is not None and parent_commit != head_sha:
                raise CommitError(412, "A commit has happened since. Please refresh and try again.")
            tree = dict(repo.commits[head_sha].tree) if head_sha else {}
            for change in changes:
                self._apply(tree, change)
            self._counter += 1
            digest = hashlib.sha1()
            for part in (head_sha or "", title, message, str(self._counter), str(time.time())):
                digest.update(part.encode() + b"\0")
            for path in sorted(tree):
                digest.update(f"{path}\0{tree[path].oid}\0".encode())
            commit = Commit(
                sha=digest.hexdigest(),
                parent=head_sha,
                title=title,
                message=message,
                author=author,
                timestamp=time.time(),
                tree=tree,
            )
            repo.commits[commit.sha] = commit
            repo.branches[branch] = commit.sha
            return commit

    def _apply(self, tree: dict[str, Blob], change: FileChange) -> None:
        if change.kind == "file":
            tree[change.path] = Blob(change.data, lfs=False)
        elif change.kind == "lfsFile":
            data = self.lfs_objects.get(change.sha256)
            if data is None:
                raise CommitError(422, f"LFS object {change.sha256} for {change.path} was never uploaded")
            tree[change.path] = Blob(data, lfs=True)
        elif change.kind == "deletedFile":
            if tree.pop(change.path, None) is None:
                raise CommitError(404, "A file with this name doesn't exist", "EntryNotFound")
        elif change.kind == "deletedFolder":
            prefix = change.path.rstrip("/") + "/"
            for path in [p for p in tree if p.startswith(prefix)]:
                del tree[path]
        else:
            raise CommitError(400, f"unknown commit operation {change.kind!r}")
