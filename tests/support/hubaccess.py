"""Who may do what on the Hub test server: token roles, fine-grained scopes, orgs, gated repos.

Modelled on what huggingface.co answers (and huggingface_hub expects):
- a token has a role: `read`, `write` or `fineGrained`. `/api/whoami-v2` reports it under
  `auth.accessToken.role`; a fine-grained token lists its scopes under
  `auth.accessToken.fineGrained.scoped[]` as `{entity: {type, name}, permissions: [...]}`,
  where an entity is the user, an org, or one repo, and permissions include
  `repo.content.read` and `repo.write`.
- a write token writes in the user's own namespace and in orgs where the user's role is
  write or admin; a `contributor` of an org creates repos there and writes only those.
  The server's default token (`orgs=None`) may write anywhere, as the tests written
  before orgs existed assume; its whoami lists LEGACY_ORGS (admin in each),
  so checks that read whoami (the preflight) accept pushes to those namespaces.
- a private repo is readable by tokens that could write its namespace (or hold a
  fine-grained read scope on it); others get 404, as if it did not exist.
- a gated repo answers its metadata and README to anyone, but file contents only to users
  whose access was granted: 401 without a token, 403 with one, both with
  `X-Error-Code: GatedRepo` (huggingface_hub raises GatedRepoError on that header).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

READ = "repo.content.read"
WRITE = "repo.write"
# Files of a gated repo everyone may read (the Hub shows the card before access is asked for).
UNGATED_FILES = frozenset({"README.md", ".gitattributes"})
_WRITING_ORG_ROLES = frozenset({"write", "admin"})
LEGACY_ORGS = ("acme", "kubetune", "lab", "my-org", "org", "team", "vendor")


@dataclass(frozen=True)
class TokenInfo:
    """One token. `scopes`: entity name (user, org or repo id) -> permissions, fine-grained tokens only."""

    user: str
    write: bool
    fine_grained: bool = False
    scopes: dict[str, frozenset[str]] = field(default_factory=dict)
    orgs: dict[str, str] | None = None  # org -> role in it; None: member of every org with write
    can_read_gated: bool = True

    @property
    def role(self) -> str:
        return "fineGrained" if self.fine_grained else "write" if self.write else "read"

    def _namespace_role(self, namespace: str) -> str | None:
        if namespace == self.user:
            return "admin"
        if self.orgs is None:
            return "write"
        return self.orgs.get(namespace)

    def _scoped(self, repo_id: str, permission: str) -> bool:
        namespace = repo_id.split("/", 1)[0]
        return any(permission in self.scopes.get(entity, frozenset()) for entity in (repo_id, namespace))

    def may_write(self, repo_id: str, creator: str | None = None) -> bool:
        """`creator`: who created the repo (None: it does not exist yet)."""
        namespace = repo_id.split("/", 1)[0]
        role = self._namespace_role(namespace)
        allowed = role in _WRITING_ORG_ROLES or (role == "contributor" and creator in (None, self.user))
        if self.fine_grained:
            return allowed and self._scoped(repo_id, WRITE)
        return self.write and allowed

    def may_read_private(self, repo_id: str) -> bool:
        namespace = repo_id.split("/", 1)[0]
        if self._namespace_role(namespace) is None:
            return False
        return not self.fine_grained or self._scoped(repo_id, READ) or self._scoped(repo_id, WRITE)

    def whoami(self) -> dict[str, Any]:
        """The /api/whoami-v2 body for this token."""
        access: dict[str, Any] = {"displayName": "test", "role": self.role, "createdAt": "2025-01-01T00:00:00.000Z"}
        if self.fine_grained:
            access["fineGrained"] = {
                "canReadGatedRepos": self.can_read_gated,
                "global": ["discussion.write"],
                "scoped": [{"entity": _entity(name, self), "permissions": sorted(permissions)}
                           for name, permissions in sorted(self.scopes.items())],
            }
        listed = self.orgs if self.orgs is not None else dict.fromkeys(LEGACY_ORGS, "admin")
        orgs = [{"type": "org", "name": org, "fullname": org, "roleInOrg": role}
                for org, role in sorted(listed.items())]
        return {"type": "user", "id": self.user, "name": self.user, "fullname": self.user, "orgs": orgs,
                "auth": {"type": "access_token", "accessToken": access}}


def _entity(name: str, token: TokenInfo) -> dict[str, str]:
    if "/" in name:
        return {"type": "model", "name": name}
    return {"type": "user" if name == token.user else "org", "name": name}


def gated_message(repo_type: str, repo_id: str, url: str, authenticated: bool) -> str:
    """The Hub's wording for a refused gated download."""
    if not authenticated:
        return (f"Access to {repo_type} {repo_id} is restricted. You must have access to it and be authenticated "
                "to access it. Please log in.")
    return f"Access to {repo_type} {repo_id} is restricted and you are not in the authorized list. Visit {url} " \
           "to ask for access."
