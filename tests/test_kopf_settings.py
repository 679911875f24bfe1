"""kopf's bookkeeping as the operator configures it: none on our objects, and under our group if ever."""

from __future__ import annotations

import kopf

from kubetune.builders import LABEL_DATASET, LABEL_TUNINGJOB
from kubetune.builders.names import LABEL_MANAGED_BY, MANAGED_BY
from kubetune.controller.manager import Controller
from kubetune.handlers.main import build_registry
from kubetune.handlers.startup import NoDiffBaseStorage, NoProgressStorage, configure_kopf
from kubetune.kube import KubeClient
from kubetune.metrics import OperatorMetrics
from support.kube_cluster import WIRING_SETTINGS

WATCHED_GROUPS = {"tuningjobs": "kubetune.io", "datasets": "kubetune.io", "jobs": "batch", "pods": ""}


def test_kopf_has_no_resource_handlers_so_it_writes_nothing_on_objects() -> None:
    # kopf writes its diff base, progress annotations and finalizers only for change handlers
    # (on.create/update/resume/delete) and daemons/timers. The operator has none of them, nor
    # watch handlers: the controller's own informers watch every kind (spec changes are seen by
    # generation), with label selectors for the Jobs and Pods.
    registry = build_registry(WIRING_SETTINGS)
    assert registry._changing.get_all_handlers() == []
    assert registry._spawning.get_all_handlers() == []
    assert registry._watching.get_all_handlers() == []
    controller = Controller(WIRING_SETTINGS, KubeClient(), OperatorMetrics())
    watched = {(WATCHED_GROUPS[i.scope.plural], i.scope.plural) for i in controller.informers}
    assert watched == {("kubetune.io", "tuningjobs"), ("kubetune.io", "datasets"), ("batch", "jobs"), ("", "pods")}
    # Jobs and Pods: the ones the operator created (its label), if a TuningJob's or a Dataset's.
    selected = {(i.scope.plural, i.scope.label, i.scope.value, i.scope.owners) for i in controller.informers
                if i.scope.label}
    assert selected == {(plural, LABEL_MANAGED_BY, MANAGED_BY, (LABEL_TUNINGJOB, LABEL_DATASET))
                        for plural in ("jobs", "pods")}


def test_no_diff_base_is_built_or_read() -> None:
    settings = kopf.OperatorSettings()
    configure_kopf(settings)
    storage = settings.persistence.diffbase_storage
    assert isinstance(storage, NoDiffBaseStorage)
    meta = {"name": "x", "namespace": "default", "labels": {"team": "nlp"},
            "annotations": {"kubetune.io/last-handled-configuration": '{"spec": {}}'}}
    dataset = kopf.Body({"apiVersion": "kubetune.io/v1alpha1", "kind": "Dataset", "metadata": meta,
                         "spec": {"format": "alpaca"}, "status": {"phase": "Ready"}})
    assert storage.build(body=dataset) == {}
    assert storage.fetch(body=dataset) is None  # an older operator's record is ignored, not trusted
    progress = settings.persistence.progress_storage
    assert isinstance(progress, NoProgressStorage)
    assert progress.fetch(key=kopf.HandlerId("any"), body=dataset) is None
    # Were kopf ever to keep a record, it would be under our group, where `kubectl get -o yaml` shows whose.
    assert settings.persistence.finalizer.startswith("kubetune.io/")


def test_kopf_does_not_scan_crds_or_namespaces() -> None:
    # Its watches of CRDs and namespaces would serve no handler and need cluster-scoped grants the
    # chart does not give (test_controller_wiring runs a namespaced operator under its Roles).
    settings = kopf.OperatorSettings()
    configure_kopf(settings)
    assert settings.scanning.disabled is True
