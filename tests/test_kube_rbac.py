"""The emulated API server's RBAC (tests/support/kube_rbac.py): what it lets the operator do."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from support.kube_cluster import emulated_cluster
from support.kube_rbac import Attributes, Authorizer, chart_authorizer, owner_finalizer_checks, request_attributes

NS = "/namespaces/team-a"


@pytest.mark.parametrize(("method", "path", "params", "expected"), [
    ("GET", f"/api/v1{NS}/pods", {}, Attributes("", "pods", "list", "team-a")),
    ("GET", f"/api/v1{NS}/pods", {"watch": "true"}, Attributes("", "pods", "watch", "team-a")),
    ("GET", f"/api/v1{NS}/pods/p-0/log", {"tailLines": "5"}, Attributes("", "pods/log", "get", "team-a", "p-0")),
    ("POST", f"/apis/batch/v1{NS}/jobs", {}, Attributes("batch", "jobs", "create", "team-a")),
    ("PATCH", f"/apis/kubetune.io/v1alpha1{NS}/tuningjobs/tj/status", {},
     Attributes("kubetune.io", "tuningjobs/status", "patch", "team-a", "tj")),
    ("PUT", f"/apis/kubetune.io/v1alpha1{NS}/tuningjobs/tj", {}, Attributes("kubetune.io", "tuningjobs", "update",
                                                                             "team-a", "tj")),
    ("DELETE", f"/api/v1{NS}/configmaps", {}, Attributes("", "configmaps", "deletecollection", "team-a")),
    ("GET", "/apis/kubetune.io/v1alpha1/tuningjobs", {}, Attributes("kubetune.io", "tuningjobs", "list")),
    ("GET", "/api/v1/namespaces", {"watch": "1"}, Attributes("", "namespaces", "watch")),
    ("GET", "/api/v1/namespaces/team-a", {}, Attributes("", "namespaces", "get", None, "team-a")),
])
def test_request_attributes_are_the_api_servers(method: str, path: str, params: dict[str, str],
                                               expected: Attributes) -> None:
    assert request_attributes(method, path, params) == expected


@pytest.mark.parametrize("path", ["/api", "/apis", "/apis/kubetune.io/v1alpha1", "/version", "/api/v1"])
def test_discovery_is_not_a_resource_request(path: str) -> None:
    assert request_attributes("GET", path, {}) is None
    assert Authorizer([]).denial("GET", path, {}, None) is None


def test_rules_match_as_rbac_does() -> None:
    authorizer = Authorizer([
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
        {"apiGroups": ["batch"], "resources": ["*"], "verbs": ["create"]},
        {"apiGroups": ["kubetune.io"], "resources": ["tuningjobs/status"], "verbs": ["*"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"], "resourceNames": ["allowed"]},
    ])
    assert authorizer.allows(Attributes("", "pods", "list"))
    assert not authorizer.allows(Attributes("", "pods", "watch"))
    assert not authorizer.allows(Attributes("", "pods/log", "get")), "a subresource is a resource of its own"
    assert not authorizer.allows(Attributes("apps", "pods", "get")), "the API group must match"
    assert authorizer.allows(Attributes("batch", "jobs", "create"))
    assert authorizer.allows(Attributes("kubetune.io", "tuningjobs/status", "patch"))
    assert not authorizer.allows(Attributes("kubetune.io", "tuningjobs", "patch"))
    assert authorizer.allows(Attributes("", "configmaps", "get", "ns", "allowed"))
    assert not authorizer.allows(Attributes("", "configmaps", "get", "ns", "other"))


def job_owned_by(kind: str, *, block: bool) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "ownerReferences": [
        {"apiVersion": "kubetune.io/v1alpha1", "kind": kind, "name": "tj", "uid": "u", "controller": True,
         "blockOwnerDeletion": block}]}}


def test_blocking_an_owners_deletion_needs_update_on_its_finalizers() -> None:
    assert owner_finalizer_checks(job_owned_by("TuningJob", block=True), "ns") == [
        Attributes("kubetune.io", "tuningjobs/finalizers", "update", "ns", "tj")]
    assert owner_finalizer_checks(job_owned_by("Dataset", block=False), "ns") == []
    may_create = Authorizer([{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create"]},
                             {"apiGroups": ["kubetune.io"], "resources": ["tuningjobs"], "verbs": ["update"]}])
    path = "/apis/batch/v1/namespaces/ns/jobs"
    denial = may_create.denial("POST", path, {}, job_owned_by("TuningJob", block=True))
    assert denial is not None and "cannot set blockOwnerDeletion" in denial and "tuningjobs/finalizers" in denial
    assert may_create.denial("POST", path, {}, job_owned_by("TuningJob", block=False)) is None
    finalizers = Authorizer([*may_create.rules, {"apiGroups": ["kubetune.io"], "resources": ["tuningjobs/finalizers"],
                                                 "verbs": ["update"]}])
    assert finalizers.denial("POST", path, {}, job_owned_by("TuningJob", block=True)) is None


@pytest.mark.parametrize("watch_namespaces", [(), ("team-a",)], ids=["cluster-wide", "namespaced"])
def test_the_chart_lets_the_operator_block_its_owners_deletion(watch_namespaces: tuple[str, ...]) -> None:
    """Every child the operator creates names its TuningJob or Dataset with blockOwnerDeletion:
    on clusters that enforce owner-reference permissions (OpenShift) that needs the finalizers."""
    authorizer = chart_authorizer(*watch_namespaces)
    for plural in ("tuningjobs", "datasets"):
        assert authorizer.allows(Attributes("kubetune.io", f"{plural}/finalizers", "update", "team-a", "x"))


def test_a_role_grants_in_its_namespace_only() -> None:
    jobs = [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create"]}]
    authorizer = Authorizer.of_roles([{"kind": "Role", "metadata": {"name": "op", "namespace": "team-a"},
                                       "rules": jobs}])
    assert authorizer.allows(Attributes("batch", "jobs", "create", "team-a"))
    assert not authorizer.allows(Attributes("batch", "jobs", "create", "team-b"))
    assert not authorizer.allows(Attributes("batch", "jobs", "create")), "not across namespaces"
    namespaced = chart_authorizer("team-a")
    assert not namespaced.rules, "the namespaced chart grants nothing cluster-scoped"
    assert namespaced.allows(Attributes("batch", "jobs", "create", "team-a"))
    assert not namespaced.allows(Attributes("batch", "jobs", "create", "team-b"))


def test_the_emulator_refuses_what_the_rules_do_not_grant_to_the_operator_only() -> None:
    rules = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]
    with emulated_cluster(job_controller=False, authorizer=Authorizer(rules)) as cluster:
        def get(path: str, agent: str) -> int:
            request = urllib.request.Request(cluster.url + path, headers={"User-Agent": agent})
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    return int(answer.status)
            except urllib.error.HTTPError as error:
                if error.code == 403:
                    body = json.loads(error.read())
                    assert body["reason"] == "Forbidden" and 'cannot list resource "pods"' in body["message"]
                return int(error.code)

        operator = "OpenAPI-Generator/37.0.2/python"
        assert get("/api/v1/namespaces/default/configmaps", operator) == 200
        assert get("/api/v1/namespaces/default/pods", operator) == 403
        assert cluster.emulator.denied == [
            'GET /api/v1/namespaces/default/pods: pods is forbidden: User '
            '"system:serviceaccount:kubetune-system:kubetune" cannot list resource "pods" in API group "" '
            'in the namespace "default"']
        # The cluster's own components are not the operator: the rig's RBAC is not theirs.
        assert get("/api/v1/namespaces/default/pods", "kubelet/v1.33.0 (linux/amd64) kubernetes/emulated") == 200
