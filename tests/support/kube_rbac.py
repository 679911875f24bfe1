"""RBAC for the emulated API server: the operator gets exactly what the chart grants it.

A real API server authorizes every request of the operator's ServiceAccount against its Roles
and ClusterRoles, and its admission chain adds checks of its own; kmock allows everything.
`Authorizer` answers a request as a real one would (403 Forbidden, with the API server's
message) when the chart's rules do not cover it:

- the request's attributes as the API server derives them from the path (apiGroup, resource,
  subresource, verb: GET of one object is `get`, of a collection `list`, with `watch=true`
  `watch`; POST `create`, PUT `update`, PATCH `patch`, DELETE `delete`);
- rules with wildcards (`*`) and `resource/subresource` names, as RBAC matches them;
- the OwnerReferencesPermissionEnforcement admission plugin (on in OpenShift and other hardened
  clusters): creating an object whose ownerReference sets `blockOwnerDeletion` needs `update`
  on the owner's `finalizers` subresource.

Requests that are not resource requests (discovery, /version) are allowed, as the built-in
system:discovery role allows them to every authenticated client.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SERVICE_ACCOUNT = "system:serviceaccount:kubetune-system:kubetune"
_WRITE_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclass(frozen=True)
class Attributes:
    """What RBAC decides on: one verb on one resource (or subresource) of one API group."""

    group: str
    resource: str  # "pods", or "pods/log" for a subresource
    verb: str
    namespace: str | None = None
    name: str | None = None

    def message(self) -> str:
        """The API server's 403 text."""
        what = f'{self.resource.split("/")[0]} "{self.name}"' if self.name else self.resource.split("/")[0]
        group = f'in API group "{self.group}"'
        where = f' in the namespace "{self.namespace}"' if self.namespace else " at the cluster scope"
        return (f'{what} is forbidden: User "{SERVICE_ACCOUNT}" cannot {self.verb} resource '
                f'"{self.resource}" {group}{where}')


def request_attributes(method: str, path: str, params: Mapping[str, str]) -> Attributes | None:
    """The RBAC attributes of a request to `path`; None for a non-resource request (discovery)."""
    parts = [part for part in path.split("/") if part]
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, rest = parts[1], parts[3:]
    else:
        return None
    namespace = None
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource, name = rest[0], rest[1] if len(rest) > 1 else None
    if len(rest) > 2:
        resource = f"{resource}/{rest[2]}"
    if method == "GET":
        verb = "get" if name else "watch" if params.get("watch") in ("true", "1") else "list"
    elif method == "DELETE" and name is None:
        verb = "deletecollection"
    else:
        verb = _WRITE_VERBS.get(method, method.lower())
    return Attributes(group, resource, verb, namespace, name)


def owner_finalizer_checks(obj: Mapping[str, Any], namespace: str | None) -> list[Attributes]:
    """What OwnerReferencesPermissionEnforcement asks before `obj` is created: `update` on the
    `finalizers` of every owner whose reference blocks its deletion."""
    checks = []
    for reference in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if reference.get("blockOwnerDeletion"):
            api_version = str(reference.get("apiVersion", ""))
            group = api_version.rpartition("/")[0]
            kind = str(reference.get("kind", ""))
            plural = kind.lower() + "s"  # TuningJob -> tuningjobs, as for every kind the operator owns
            checks.append(Attributes(group, f"{plural}/finalizers", "update", namespace, reference.get("name")))
    return checks


class Authorizer:
    """RBAC over fixed rules: `rules` hold everywhere (a ClusterRole bound by a ClusterRoleBinding),
    `namespaced` only in their namespace (a Role bound by a RoleBinding there)."""

    def __init__(self, rules: Iterable[Mapping[str, Any]] = (),
                 namespaced: Mapping[str, Iterable[Mapping[str, Any]]] | None = None) -> None:
        self.rules = [dict(rule) for rule in rules]
        self.namespaced = {namespace: [dict(rule) for rule in granted]
                           for namespace, granted in (namespaced or {}).items()}

    @classmethod
    def of_roles(cls, roles: Iterable[Mapping[str, Any]]) -> Authorizer:
        """From the rendered Roles and ClusterRoles bound to the operator (support.helm.operator_roles)."""
        everywhere: list[Mapping[str, Any]] = []
        namespaced: dict[str, list[Mapping[str, Any]]] = {}
        for role in roles:
            if role["kind"] == "ClusterRole":
                everywhere += role["rules"]
            else:
                namespaced.setdefault(role["metadata"]["namespace"], []).extend(role["rules"])
        return cls(everywhere, namespaced)

    def allows(self, attributes: Attributes) -> bool:
        rules = [*self.rules, *self.namespaced.get(attributes.namespace or "", [])]
        return any(_covers(rule, attributes) for rule in rules)

    def denial(self, method: str, path: str, params: Mapping[str, str], body: Any) -> str | None:
        """Why the API server would refuse this request (its 403 message), or None."""
        attributes = request_attributes(method, path, params)
        if attributes is None:
            return None
        if not self.allows(attributes):
            return attributes.message()
        if attributes.verb == "create" and isinstance(body, Mapping):
            for check in owner_finalizer_checks(body, attributes.namespace):
                if not self.allows(check):
                    return ("cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't "
                            f"set finalizers on: {check.message()}")
        return None


def _covers(rule: Mapping[str, Any], attributes: Attributes) -> bool:
    def has(values: Iterable[str], wanted: str) -> bool:
        return "*" in values or wanted in values

    if rule.get("nonResourceURLs"):
        return False
    resources = rule.get("resources") or []
    resource_named = has(resources, attributes.resource) or (
        "/" in attributes.resource and f"*/{attributes.resource.split('/', 1)[1]}" in resources)
    names = rule.get("resourceNames") or []
    return (has(rule.get("apiGroups") or [], attributes.group) and resource_named
            and has(rule.get("verbs") or [], attributes.verb)
            and (not names or attributes.name in names))


@functools.cache
def chart_authorizer(*watch_namespaces: str) -> Authorizer:
    """What the chart grants the operator: cluster-wide (no namespaces), or with watchNamespaces a
    Role in each of them and nothing cluster-scoped."""
    from support.helm import helm_template, operator_roles

    values = {"watchNamespaces": list(watch_namespaces)} if watch_namespaces else None
    return Authorizer.of_roles(operator_roles(helm_template(values)))
