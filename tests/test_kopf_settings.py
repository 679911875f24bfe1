"""kopf's bookkeeping as the operator configures it: none on our objects, and under our group if ever."""

from __future__ import annotations

import kopf

from kubetune.handlers.main import build_registry
from kubetune.handlers.startup import NoDiffBaseStorage, NoProgressStorage, configure_kopf
from support.kube_cluster import WIRING_SETTINGS


def test_every_handler_is_a_watch_handler_so_kopf_writes_nothing_on_objects() -> None:
    # kopf writes its diff base, progress annotations and finalizers only for change handlers
    # (on.create/update/resume/delete) and daemons/timers. The operator has none of them: every
    # kind is handled on plain watch events, spec changes are seen by generation.
    registry = build_registry(WIRING_SETTINGS)
    assert registry._changing.get_all_handlers() == []
    assert registry._spawning.get_all_handlers() == []
    watched = {(h.selector.group, h.selector.any_name) for h in registry._watching.get_all_handlers()
               if h.selector is not None}
    assert watched == {("kubetune.io", "tuningjobs"), ("kubetune.io", "datasets"), ("batch", "jobs"), ("", "pods")}


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
