"""Operator-wide activities: kopf's settings at startup, and the login to the API server."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Final, cast

import kopf
import kubernetes.client
import kubernetes.config

from kubetune.api.common import GROUP
from kubetune.handlers import OperatorContext

FINALIZER = f"{GROUP}/finalizer"
DIFFBASE_KEY = "last-handled-configuration"
# The kinds with kopf change handlers (on.create/update/resume): only their changes need kopf's
# record of the last handled spec. TuningJobs, Jobs and Pods are handled on plain watch events.
CHANGE_TRACKED_KINDS: Final = frozenset({"Dataset"})


class ChangeTrackedDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's last-handled-configuration, built only for the kinds that have change handlers.

    kopf builds this "essence" of every object on every watch event, deep-copying the whole
    body (a Pod's spec, a TuningJob's status with its log tail) just to drop most of it; for
    kinds without change handlers nothing reads it. That copy was the largest single cost of
    the operator's event loop in a burst of TuningJobs (bench/control_plane.py).
    """

    def __init__(self, kinds: Iterable[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kinds = frozenset(kinds)

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        if body.get("kind") not in self.kinds:
            return cast(kopf.BodyEssence, {})
        return super().build(body=body, extra_fields=extra_fields)


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """kopf keeps its bookkeeping under our own group, so `kubectl get -o yaml` shows whose it is."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = ChangeTrackedDiffBaseStorage(
        CHANGE_TRACKED_KINDS, prefix=GROUP, key=DIFFBASE_KEY)
    settings.persistence.finalizer = FINALIZER
    # Only the Events we post ourselves; kopf's log lines stay in the operator's log.
    settings.posting.loggers = False
    # A status refresh in flight (a sync handler in a worker thread) gets this long to finish
    # when the operator stops or the run ends, rather than being orphaned and re-spawned.
    settings.background.instant_exit_timeout = 0.5


def load_kube_configuration() -> kubernetes.client.Configuration:
    """The API server and credentials: $KUBECONFIG when set, else in-cluster, else ~/.kube/config.

    Read now rather than at import time (the `kubernetes` package reads $KUBECONFIG when it is
    imported), and into a private Configuration rather than the package-wide default.
    """
    configuration = kubernetes.client.Configuration()
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
            return configuration
        except kubernetes.config.ConfigException:
            kubeconfig = os.path.expanduser("~/.kube/config")
    kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return configuration


def connection_info(configuration: kubernetes.client.Configuration) -> kopf.ConnectionInfo:
    """The same endpoint and credentials, in the form kopf's own API client takes."""
    header = (configuration.get_api_key_with_prefix("BearerToken")
              or configuration.get_api_key_with_prefix("authorization"))
    parts = header.split(" ", 1) if header else []
    scheme, token = (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


def register(registry: kopf.OperatorRegistry, ctx: OperatorContext) -> None:
    @kopf.on.startup(registry=registry, id="operator_startup")
    def operator_startup(settings: kopf.OperatorSettings, logger: kopf.Logger, **_: Any) -> None:
        configure_kopf(settings)
        logger.info("kubetune operator starting: trainer image %s, namespaces %s",
                    ctx.settings.trainer_image, ", ".join(ctx.settings.namespaces) or "all")

    @kopf.on.login(registry=registry, id="operator_login")
    def operator_login(logger: kopf.Logger, **_: Any) -> kopf.ConnectionInfo:
        configuration = load_kube_configuration()
        ctx.kube.configure(configuration)
        logger.info("talking to the API server at %s", configuration.host)
        return connection_info(configuration)
