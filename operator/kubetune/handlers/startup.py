"""Operator-wide activities: kopf's settings at startup, and the login to the API server."""

from __future__ import annotations

import os
from typing import Any

import kopf
import kubernetes.client
import kubernetes.config

from kubetune.api.common import GROUP
from kubetune.handlers import OperatorContext

FINALIZER = f"{GROUP}/finalizer"
DIFFBASE_KEY = "last-handled-configuration"


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """kopf keeps its bookkeeping under our own group, so `kubectl get -o yaml` shows whose it is."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP, key=DIFFBASE_KEY)
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
