"""The Helm chart, rendered by the real helm binary and checked object by object."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kubetune.controller.manager import Controller
from kubetune.kube import KubeClient
from kubetune.metrics import OperatorMetrics
from kubetune.settings import Settings
from support.helm import (
    CHART_DIR,
    RELEASE_NAMESPACE,
    REPO_ROOT,
    HelmError,
    Obj,
    grants_secrets,
    helm_install_notes,
    helm_lint,
    helm_template,
    is_user_role,
    of_kind,
    operator_roles,
    permissions,
    the_one,
)

# One values file per chart option; each must lint and render within the rules below.
VALUE_CASES: dict[str, dict[str, Any] | None] = {
    "defaults": None,
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "service-monitor": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}},
    "metrics-off": {"metrics": {"enabled": False}},
    "work-volume": {"workVolume": {"size": "1Ti", "storageClassName": "standard-rwo"},
                    "trainer": {"terminationGracePeriodSeconds": 900}},
    "existing-service-account": {"serviceAccount": {"create": False, "name": "platform-sa"}},
    "no-rbac": {"rbac": {"create": False}},
    "scheduling": {
        "nodeSelector": {"pool": "system"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["system"]}]}
                    ]
                }
            }
        },
        "priorityClassName": "system-cluster-critical",
        "imagePullSecrets": [{"name": "regcred"}],
        "podAnnotations": {"example.com/team": "ml"},
        "podLabels": {"team": "ml"},
        "extraEnv": [{"name": "KUBETUNE_LOG_LEVEL", "value": "DEBUG"}],
    },
}

OUR_RESOURCES = {"tuningjobs", "datasets", "tuningjobs/status", "datasets/status"}


def operator_container(objects: list[Obj]) -> Obj:
    containers = the_one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [container["name"] for container in containers] == ["operator"]
    return containers[0]


def env_of(objects: list[Obj]) -> dict[str, str]:
    env = operator_container(objects)["env"]
    names = [item["name"] for item in env]
    assert len(names) == len(set(names)), f"duplicate env names: {names}"
    return {item["name"]: item.get("value", "") for item in env}


def rules_of(objects: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    for role in of_kind(objects, "ClusterRole") + of_kind(objects, "Role"):
        for rule in role.get("rules") or []:
            yield role, rule


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}, True),
        ({"apiGroups": [""], "resources": ["*"], "verbs": ["list"]}, True),
        ({"apiGroups": ["*"], "resources": ["pods"], "verbs": ["get"]}, True),
        ({"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}, True),
        ({"apiGroups": [""], "resources": ["secrets/status"], "verbs": ["get"]}, True),
        ({"apiGroups": [""], "resources": ["pods", "configmaps"], "verbs": ["get", "list"]}, False),
    ],
)
def test_secret_rule_checker_recognises_grants(rule: Obj, expected: bool) -> None:
    assert grants_secrets(rule) is expected


@pytest.mark.parametrize("case", VALUE_CASES)
def test_lint_passes(case: str) -> None:
    result = helm_lint(VALUE_CASES[case])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("case", VALUE_CASES)
def test_no_rbac_anywhere_reaches_secrets(case: str) -> None:
    objects = helm_template(VALUE_CASES[case])
    for role, rule in rules_of(objects):
        assert not grants_secrets(rule), f"{role['kind']} {role['metadata']['name']} grants {rule}"
    for role in of_kind(objects, "ClusterRole") + of_kind(objects, "Role"):
        assert "aggregationRule" not in role
    # A binding to a role the chart does not define (cluster-admin, edit) would bypass the above.
    defined = {
        (role["kind"], role["metadata"]["name"]) for role in of_kind(objects, "ClusterRole") + of_kind(objects, "Role")
    }
    for binding in of_kind(objects, "ClusterRoleBinding") + of_kind(objects, "RoleBinding"):
        assert (binding["roleRef"]["kind"], binding["roleRef"]["name"]) in defined


def test_cluster_wide_rbac_is_exactly_what_the_operator_needs() -> None:
    objects = helm_template(None)
    assert not of_kind(objects, "Role")
    [cluster_role] = operator_roles(objects)
    assert cluster_role["kind"] == "ClusterRole"
    assert not is_user_role(cluster_role)
    expected = {
        *(("kubetune.io", res, verb) for res in ("tuningjobs", "datasets") for verb in ("get", "list", "watch")),
        *(("kubetune.io", res, verb) for res in ("tuningjobs/status", "datasets/status") for verb in ("get", "patch")),
        ("kubetune.io", "tuningjobs/finalizers", "update"),
        ("kubetune.io", "datasets/finalizers", "update"),
        *(("batch", "jobs", verb) for verb in ("get", "list", "watch", "create", "patch")),
        ("", "configmaps", "create"),
        ("", "services", "get"),
        ("", "services", "create"),
        *(("", "pods", verb) for verb in ("get", "list", "watch")),
        ("", "pods/log", "get"),
        ("", "persistentvolumeclaims", "get"),
        ("", "persistentvolumeclaims", "create"),
        ("", "events", "create"),
        ("", "events", "list"),
    }
    assert permissions(cluster_role["rules"]) == expected
    binding = the_one(objects, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": cluster_role["metadata"]["name"],
    }
    service_account = the_one(objects, "ServiceAccount")
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": service_account["metadata"]["name"],
            "namespace": RELEASE_NAMESPACE,
        }
    ]


@pytest.mark.parametrize("values", [None, {"watchNamespaces": ["team-a"]}], ids=["cluster-wide", "namespaced"])
def test_the_operator_may_list_and_watch_everything_its_informers_watch(values: Obj | None) -> None:
    objects = helm_template(values)
    granted = {grant for role in operator_roles(objects) for grant in permissions(role["rules"])}
    settings = Settings(namespaces=(values or {}).get("watchNamespaces", []))
    informers = Controller(settings, KubeClient(), OperatorMetrics()).informers
    assert informers
    for informer in informers:
        group = informer.scope.api_version.rpartition("/")[0]
        for verb in ("list", "watch"):
            assert (group, informer.scope.plural, verb) in granted, (informer.scope, verb)


def test_namespaced_mode_grants_through_roles_only() -> None:
    objects = helm_template({"watchNamespaces": ["team-a", "team-b", "team-a"]})
    assert not of_kind(objects, "ClusterRoleBinding")
    # The only ClusterRoles are the ones for people (aggregated into admin/edit/view, bound by
    # the chart to no one): none grants the operator anything, none reaches jobs or pods.
    for cluster_role in of_kind(objects, "ClusterRole"):
        assert is_user_role(cluster_role)
        assert {group for group, _, _ in permissions(cluster_role["rules"])} == {"kubetune.io"}
    assert not of_kind(
        helm_template({"watchNamespaces": ["team-a"], "rbac": {"aggregateToDefaultRoles": False}}), "ClusterRole"
    )
    roles = {role["metadata"]["namespace"]: role for role in of_kind(objects, "Role")}
    bindings = {b["metadata"]["namespace"]: b for b in of_kind(objects, "RoleBinding")}
    assert sorted(roles) == sorted(bindings) == ["team-a", "team-b"]
    service_account = the_one(objects, "ServiceAccount")["metadata"]["name"]
    for namespace, role in roles.items():
        granted = permissions(role["rules"])
        assert {res for _, res, _ in granted} >= OUR_RESOURCES | {"jobs", "pods", "configmaps"}
        assert not {res for _, res, _ in granted} & {"namespaces", "customresourcedefinitions"}
        binding = bindings[namespace]
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": service_account, "namespace": RELEASE_NAMESPACE}
        ]
    assert env_of(objects)["KUBETUNE_NAMESPACES"] == "team-a,team-b"


def test_user_roles_extend_the_builtin_roles() -> None:
    objects = helm_template(None)
    user_roles = {role["metadata"]["name"]: role for role in of_kind(objects, "ClusterRole") if is_user_role(role)}
    assert sorted(user_roles) == ["kubetune-edit", "kubetune-view"]
    edit, view = user_roles["kubetune-edit"], user_roles["kubetune-view"]
    assert {"rbac.authorization.k8s.io/aggregate-to-admin", "rbac.authorization.k8s.io/aggregate-to-edit"} <= set(
        edit["metadata"]["labels"]
    )
    assert edit["metadata"]["labels"].get("rbac.authorization.k8s.io/aggregate-to-view") is None
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert ("kubetune.io", "tuningjobs", "create") in permissions(edit["rules"])
    assert ("kubetune.io", "tuningjobs/status", "patch") not in permissions(edit["rules"])
    assert {verb for _, _, verb in permissions(view["rules"])} == {"get", "list", "watch"}
    assert all(role not in operator_roles(objects) for role in user_roles.values())
    disabled = helm_template({"rbac": {"aggregateToDefaultRoles": False}})
    assert not [role for role in of_kind(disabled, "ClusterRole") if is_user_role(role)]


def test_rbac_follows_the_service_account_settings() -> None:
    objects = helm_template(VALUE_CASES["existing-service-account"])
    assert not of_kind(objects, "ServiceAccount")
    assert the_one(objects, "ClusterRoleBinding")["subjects"][0]["name"] == "platform-sa"
    pod = the_one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "platform-sa"
    no_rbac = helm_template(VALUE_CASES["no-rbac"])
    assert not [obj for obj in no_rbac if obj["apiVersion"].startswith("rbac.authorization.k8s.io")]


def test_deployment_runs_one_hardened_operator() -> None:
    objects = helm_template(None)
    deployment = the_one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == the_one(objects, "ServiceAccount")["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = operator_container(objects)
    assert [*container["command"], *container["args"]] == ["kubetune", "operator"]
    assert container["image"] == "ghcr.io/kubetune/operator:0.1.0"
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 65532
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert container["resources"]["requests"]["memory"]


def test_probes_hit_kopf_liveness_endpoint_on_the_health_port() -> None:
    objects = helm_template({"health": {"port": 9443}})
    container = operator_container(objects)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["health"] == 9443
    assert env_of(objects)["KUBETUNE_HEALTH_PORT"] == "9443"
    for probe in ("livenessProbe", "readinessProbe"):
        http_get = container[probe]["httpGet"]
        assert http_get["path"] == "/healthz"
        port = http_get["port"]
        assert (ports[port] if isinstance(port, str) else port) == 9443


def test_scheduling_values_reach_the_pod() -> None:
    values = VALUE_CASES["scheduling"]
    assert values is not None
    objects = helm_template(values)
    template = the_one(objects, "Deployment")["spec"]["template"]
    pod = template["spec"]
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName", "imagePullSecrets"):
        assert pod[key] == values[key]
    assert template["metadata"]["annotations"] == values["podAnnotations"]
    assert template["metadata"]["labels"]["team"] == "ml"
    # extraEnv replaces the chart's own variable instead of adding a duplicate.
    assert env_of(objects)["KUBETUNE_LOG_LEVEL"] == "DEBUG"


def test_settings_in_values_reach_the_operator_environment() -> None:
    objects = helm_template(
        {
            "trainer": {
                "image": {"repository": "registry.local/trainer", "tag": "cu124"},
                "gpuResourceName": "amd.com/gpu",
                "cpu": "8",
                "memory": "64Gi",
                "gpuMemory": "24Gi",


                "terminationGracePeriodSeconds": 1800,
            },
            "validator": {"cpu": "250m", "memory": "512Mi"},
            "workVolume": {"size": "500Gi", "storageClassName": "fast-nvme", "ephemeral": True},
            "watchNamespaces": ["ml"],
            "logTailLines": 50,
            "statusRefreshSeconds": 5,
            "logReadsPerSecond": 7,
            "logLevel": "debug",
            "allowPrivateUrls": True,
            "metrics": {"port": 9100},
        }
    )
    env = env_of(objects)
    assert env["KUBETUNE_TRAINER_IMAGE"] == "registry.local/trainer:cu124"
    assert env["KUBETUNE_GPU_RESOURCE_NAME"] == "amd.com/gpu"
    assert (env["KUBETUNE_TRAINER_CPU"], env["KUBETUNE_TRAINER_MEMORY"]) == ("8", "64Gi")
    assert env["KUBETUNE_GPU_MEMORY"] == "24Gi"
    assert (env["KUBETUNE_VALIDATOR_CPU"], env["KUBETUNE_VALIDATOR_MEMORY"]) == ("250m", "512Mi")
    assert env["KUBETUNE_NAMESPACES"] == "ml"
    assert env["KUBETUNE_TRAINER_TERMINATION_GRACE_SECONDS"] == "1800"
    assert (env["KUBETUNE_WORK_VOLUME_SIZE"], env["KUBETUNE_WORK_VOLUME_STORAGE_CLASS"],
            env["KUBETUNE_WORK_VOLUME_EPHEMERAL"]) == ("500Gi", "fast-nvme", "true")
    assert env["KUBETUNE_LOG_TAIL_LINES"] == "50"
    assert env["KUBETUNE_STATUS_REFRESH_SECONDS"] == "5"
    assert env["KUBETUNE_LOG_READS_PER_SECOND"] == "7"
    assert env["KUBETUNE_LOG_LEVEL"] == "DEBUG"
    assert env["KUBETUNE_ALLOW_PRIVATE_URLS"] == "true"
    assert env["KUBETUNE_METRICS_PORT"] == "9100"
    ports = {port["name"]: port["containerPort"] for port in operator_container(objects)["ports"]}
    assert ports["http-metrics"] == 9100
    service = the_one(objects, "Service")
    assert service["spec"]["ports"] == [
        {"name": "http-metrics", "port": 9100, "targetPort": "http-metrics", "protocol": "TCP"}
    ]


def test_default_environment_matches_operator_defaults() -> None:
    env = env_of(helm_template(None))
    defaults = Settings()
    assert env["KUBETUNE_TRAINER_IMAGE"] == defaults.trainer_image
    assert env["KUBETUNE_GPU_RESOURCE_NAME"] == defaults.gpu_resource_name
    assert env["KUBETUNE_NAMESPACES"] == ""
    assert int(env["KUBETUNE_METRICS_PORT"]) == defaults.metrics_port
    assert int(env["KUBETUNE_HEALTH_PORT"]) == defaults.health_port
    assert int(env["KUBETUNE_LOG_TAIL_LINES"]) == defaults.log_tail_lines
    # Every variable the chart sets parses with the operator's own reader.
    settings_env = {name: value for name, value in env.items() if name.startswith("KUBETUNE_")}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings_env.items():
            patch.setenv(name, value)
        assert Settings.from_env() == defaults


def test_service_monitor_is_opt_in_and_scrapes_the_metrics_service() -> None:
    assert not of_kind(helm_template(None), "ServiceMonitor")
    objects = helm_template(VALUE_CASES["service-monitor"])
    monitor = the_one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    service = the_one(objects, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [RELEASE_NAMESPACE]}
    assert [(e["port"], e["path"], e["interval"]) for e in monitor["spec"]["endpoints"]] == [
        ("http-metrics", "/metrics", "30s")
    ]


def test_metrics_can_be_turned_off() -> None:
    objects = helm_template(VALUE_CASES["metrics-off"])
    assert not of_kind(objects, "Service")
    assert env_of(objects)["KUBETUNE_METRICS_PORT"] == "0"
    with pytest.raises(HelmError, match=r"needs metrics\.enabled"):
        helm_template({"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}})


@pytest.mark.parametrize(
    "values",
    [
        {"watchNamespaces": "team-a"},
        {"watchNamespace": ["team-a"]},
        {"metrics": {"port": 0}},
        {"watchNamespaces": ["Team_A"]},
        {"logLevel": "verbose"},
    ],
)
def test_schema_rejects_mistyped_values(values: dict[str, Any]) -> None:
    with pytest.raises(HelmError, match="schema"):
        helm_template(values)


def test_kube_version_floor() -> None:
    assert helm_template(None, "--kube-version", "1.24.0")
    with pytest.raises(HelmError, match="kubeVersion"):
        helm_template(None, "--kube-version", "1.23.9")


CRD_FILES = ["datasets.kubetune.io.yaml", "tuningjobs.kubetune.io.yaml"]


def test_chart_crds_are_the_repository_crds_byte_for_byte() -> None:
    repo_crds, chart_crds = REPO_ROOT / "crds", CHART_DIR / "crds"
    assert sorted(path.name for path in repo_crds.glob("*.yaml")) == CRD_FILES
    assert sorted(path.name for path in chart_crds.iterdir()) == CRD_FILES
    for name in CRD_FILES:
        assert (chart_crds / name).read_bytes() == (repo_crds / name).read_bytes(), f"{name} drifted"


@pytest.mark.parametrize("extra_args", [(), ("--skip-crds",)])
def test_templates_never_render_crds(extra_args: tuple[str, ...]) -> None:
    # CRDs come only from crds/: helm installs them once (not with --skip-crds) and never
    # deletes them on uninstall, which would delete every TuningJob and Dataset with them.
    for path in (CHART_DIR / "templates").iterdir():
        assert "CustomResourceDefinition" not in path.read_text(), path
    assert not of_kind(helm_template(None, *extra_args), "CustomResourceDefinition")


def test_include_crds_renders_the_crds_folder() -> None:
    rendered = of_kind(helm_template(None, "--include-crds"), "CustomResourceDefinition")
    shipped = [yaml.safe_load((CHART_DIR / "crds" / name).read_text()) for name in CRD_FILES]
    assert sorted(rendered, key=lambda crd: crd["metadata"]["name"]) == shipped
    assert {crd["spec"]["group"] for crd in rendered} == {"kubetune.io"}


def leaf_paths(values: Obj, prefix: str = "") -> Iterator[str]:
    free_form = {"resources", "podSecurityContext", "securityContext", "annotations", "labels"}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in free_form:
            yield from leaf_paths(value, path + ".")
        else:
            yield path


def test_docs_list_every_value() -> None:
    docs = (REPO_ROOT / "docs" / "helm.md").read_text()
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    missing = [path for path in leaf_paths(values) if f"`{path}`" not in docs]
    assert not missing, f"docs/helm.md does not describe: {missing}"


def test_install_notes_give_next_steps() -> None:
    notes = helm_install_notes(None)
    for step in (
        "kubectl get crd tuningjobs.kubetune.io datasets.kubetune.io",
        "kubectl apply -f examples/ministral-alpaca.yaml",
        "kubectl get tj",
    ):
        assert step in notes
    assert "all namespaces" in notes
    assert "watches TuningJobs and Datasets in: team-a, team-b." in helm_install_notes(VALUE_CASES["namespaced"])
