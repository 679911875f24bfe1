"""Operator-wide activities: kopf's settings, the API clients, the controller's start and stop, the login."""

from __future__ import annotations

import os
from typing import Any, Final, cast

import kopf
import kubernetes.client
import kubernetes.config

from kubetune.api.common import GROUP
from kubetune.controller.manager import Controller
from kubetune.kube import KubeClient

FINALIZER: Final = f"{GROUP}/finalizer"
# Connections beyond the worker threads: the Event poster, and a spare.
_EXTRA_CONNECTIONS: Final = 2


class NoDiffBaseStorage(kopf.DiffBaseStorage):
    """kopf's record of the last handled spec, never built, kept or read.

    kopf builds an object's "essence" (a deep copy of its whole body) on every watch event for
    its change handlers. The operator has none (every kind is handled on plain watch events,
    spec changes are seen by generation), so the copy would only cost time, and storing it
    would cost an annotation patch per object.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, {})

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


class NoProgressStorage(kopf.ProgressStorage):
    """kopf's record of its change handlers' progress: there are none, so nothing to keep.

    kopf still "clears" every event's (empty) essence of progress marks, with a deep copy.
    """

    def fetch(self, *, key: Any, body: kopf.Body) -> None:
        return None

    def store(self, *, key: Any, record: Any, body: kopf.Body, patch: kopf.Patch) -> None:
        return None

    def purge(self, *, key: Any, body: kopf.Body, patch: kopf.Patch) -> None:
        return None

    def touch(self, *, body: kopf.Body, patch: kopf.Patch, value: str | None) -> None:
        return None

    def clear(self, *, essence: kopf.BodyEssence) -> kopf.BodyEssence:
        return essence


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """kopf keeps no record on our objects; its finalizer, were one ever set, is under our group."""
    settings.persistence.progress_storage = NoProgressStorage()
    settings.persistence.diffbase_storage = NoDiffBaseStorage()
    settings.persistence.finalizer = FINALIZER
    # The Events about our objects are the controller's; kopf's log lines stay in the operator's log.
    settings.posting.loggers = False
    # kopf has no resource handlers here (the controller's own informers watch): its watches of
    # CRDs and namespaces would serve nothing, and need cluster-scoped grants a namespaced install
    # does not have (kopf then retries 403s at start). It still finds the APIs by discovery.
    settings.scanning.disabled = True


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


def register(registry: kopf.OperatorRegistry, kube: KubeClient, watch_kube: KubeClient,
             controller: Controller) -> None:
    """`kube` serves the workers' requests, `watch_kube` the informers' watches (a connection each)."""
    configured: dict[str, kubernetes.client.Configuration] = {}

    @kopf.on.startup(registry=registry, id="operator_startup")
    def operator_startup(settings: kopf.OperatorSettings, logger: kopf.Logger, **_: Any) -> None:
        configure_kopf(settings)
        try:
            configuration = load_kube_configuration()
        except kubernetes.config.ConfigException as exc:
            raise kopf.PermanentError(f"no Kubernetes API to talk to: {exc}") from exc
        kube.configure(configuration, connections=controller.settings.workers + _EXTRA_CONNECTIONS)
        watch_kube.configure(configuration, connections=len(controller.informers))
        configured["api"] = configuration
        try:
            controller.prime()
        except Exception as exc:  # the API server is not answering yet: kopf retries the startup
            raise kopf.TemporaryError(f"listing the watched objects failed: {exc}", delay=5) from exc
        controller.start()
        logger.info("kubetune operator started: %d workers, trainer image %s, namespaces %s",
                    controller.settings.workers, controller.settings.trainer_image,
                    ", ".join(controller.settings.namespaces) or "all")

    @kopf.on.cleanup(registry=registry, id="operator_cleanup")
    def operator_cleanup(**_: Any) -> None:
        controller.stop()

    @kopf.on.login(registry=registry, id="operator_login")
    def operator_login(logger: kopf.Logger, **_: Any) -> kopf.ConnectionInfo:
        configuration = configured.get("api") or load_kube_configuration()
        logger.info("talking to the API server at %s", configuration.host)
        return connection_info(configuration)
