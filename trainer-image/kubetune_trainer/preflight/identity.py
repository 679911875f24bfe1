"""What a Hub token may do, from its /api/whoami-v2 answer: pure, so it is tested without a Hub.

A classic token has the role `read` or `write`; a write token writes in the user's own
namespace and in orgs where the user's role allows writing. A fine-grained token
(`fineGrained`) lists scopes: permissions (`repo.write`, `repo.content.read`, ...) on the
user, on an org, or on one repo.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

REPO_WRITE: Final = "repo.write"
# Org roles that may push to the org's repos (contributors create repos and push to their own).
_WRITING_ORG_ROLES: Final = frozenset({"write", "admin", "contributor"})


@dataclass(frozen=True)
class Identity:
    user: str
    role: str  # read, write, fineGrained (or what a self-hosted hub reports; unknown roles are not judged)
    orgs: dict[str, str] = field(default_factory=dict)  # org -> the user's role in it
    scopes: dict[str, frozenset[str]] = field(default_factory=dict)  # entity name -> permissions
    can_read_gated: bool = True

    @classmethod
    def from_whoami(cls, answer: Mapping[str, Any]) -> Identity:
        auth = answer.get("auth") or {}
        access = auth.get("accessToken") or {}
        fine = access.get("fineGrained") or {}
        scopes: dict[str, frozenset[str]] = {}
        for scope in fine.get("scoped") or []:
            name = str((scope.get("entity") or {}).get("name") or "")
            if name:
                scopes[name] = scopes.get(name, frozenset()) | frozenset(map(str, scope.get("permissions") or []))
        orgs = {str(o.get("name")): str(o.get("roleInOrg") or "") for o in answer.get("orgs") or [] if o.get("name")}
        return cls(user=str(answer.get("name") or ""), role=str(access.get("role") or ""), orgs=orgs,
                   scopes=scopes, can_read_gated=bool(fine.get("canReadGatedRepos", True)))

    def namespace_of(self, repo_id: str) -> str:
        return repo_id.split("/", 1)[0] if "/" in repo_id else self.user

    def full_repo_id(self, repo_id: str) -> str:
        return repo_id if "/" in repo_id else f"{self.user}/{repo_id}"

    def cannot_write(self, repo_id: str) -> str | None:
        """Why this token cannot push to `repo_id`; None when it can (as far as whoami tells)."""
        repo_id = self.full_repo_id(repo_id)
        namespace = self.namespace_of(repo_id)
        if self.role == "read":
            return "it is a read token: use a token with the write role, or a fine-grained token with " \
                   f"'Write access to contents/settings' (repo.write) on {repo_id} or {namespace}"
        if self.role not in ("write", "fineGrained"):
            return None  # a self-hosted hub's own roles: leave the verdict to the push itself
        if namespace != self.user and self.orgs.get(namespace) not in _WRITING_ORG_ROLES:
            role = self.orgs.get(namespace)
            member = f"is a {role} member of {namespace}" if role else f"is not a member of the org {namespace}"
            return f"the token's user {self.user} {member}: push to a namespace it can write (its own, " \
                   f"{self.user}/...) or ask an org admin for the write role"
        if self.role == "fineGrained" and not any(REPO_WRITE in self.scopes.get(e, frozenset())
                                                  for e in (repo_id, namespace)):
            return f"the fine-grained token has no repo.write permission on {repo_id} or {namespace}: add it " \
                   "to the token's repository permissions on the Hub"
        return None
