"""kopf's bookkeeping as the operator configures it: under our group, and only where it is read."""

from __future__ import annotations

import kopf

from kubetune.handlers.main import build_registry
from kubetune.handlers.startup import CHANGE_TRACKED_KINDS, ChangeTrackedDiffBaseStorage, configure_kopf
from support.kube_cluster import WIRING_SETTINGS

KINDS = {"datasets": "Dataset", "tuningjobs": "TuningJob", "jobs": "Job", "pods": "Pod"}


def test_every_kind_with_change_handlers_keeps_kopf_diff_base() -> None:
    # A change handler on a kind without a diff base would never see a change: kopf's diff
    # would always be empty. So adding one must add its kind to CHANGE_TRACKED_KINDS.
    registry = build_registry(WIRING_SETTINGS)
    handlers = registry._changing.get_all_handlers()
    assert handlers  # Datasets have change handlers: the check below checks something
    handled = {KINDS[handler.selector.any_name] for handler in handlers
               if handler.selector is not None and isinstance(handler.selector.any_name, str)}
    assert handled == set(CHANGE_TRACKED_KINDS)


def test_the_diff_base_is_built_for_tracked_kinds_only() -> None:
    settings = kopf.OperatorSettings()
    configure_kopf(settings)
    storage = settings.persistence.diffbase_storage
    assert isinstance(storage, ChangeTrackedDiffBaseStorage)
    meta = {"name": "x", "namespace": "default", "labels": {"team": "nlp"}}
    dataset = kopf.Body({"apiVersion": "kubetune.io/v1alpha1", "kind": "Dataset", "metadata": meta,
                         "spec": {"format": "alpaca"}, "status": {"phase": "Ready"}})
    assert storage.build(body=dataset) == {"spec": {"format": "alpaca"}, "metadata": {"labels": {"team": "nlp"}}}
    pod = kopf.Body({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": []}})
    assert storage.build(body=pod) == {}
    # Its record lives under our group, where `kubectl get -o yaml` shows whose it is.
    assert list(storage.make_keys(storage.key, body=dataset)) == ["kubetune.io/last-handled-configuration"]
