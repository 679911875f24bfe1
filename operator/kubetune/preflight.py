"""What `kubetune operator` checks before kopf starts.

Without these, a missing kubeconfig became kopf's login retry loop (a traceback every 60 s,
forever) and a taken port a traceback from deep inside a server: each is one line here,
naming what is missing and how to fix it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from kubetune.settings import ENV_PREFIX
from kubetune.usererror import UserError

DEFAULT_KUBECONFIG = "~/.kube/config"
_FIX = ("set KUBECONFIG to a kubeconfig file (the one kubectl uses), "
        "or run the operator in the cluster (helm install kubetune charts/kubetune)")


def check_cluster_config() -> str:
    """The API server the operator will talk to; a UserError when no configuration can be loaded."""
    from kubetune.handlers.startup import load_kube_configuration

    try:
        return str(load_kube_configuration().host)
    except Exception as exc:  # any failure to load it (ConfigException, YAML, OSError) means: none usable
        raise UserError(describe_missing_config(exc, os.environ.get("KUBECONFIG"))) from None


def describe_missing_config(exc: BaseException, kubeconfig: str | None) -> str:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    if kubeconfig:
        return f"cannot load the kubeconfig {kubeconfig} (from KUBECONFIG): {reason}: {_FIX}"
    default = Path(DEFAULT_KUBECONFIG).expanduser()
    if default.exists():
        return f"cannot load the kubeconfig {default}: {reason}: fix it (kubectl config view), or {_FIX}"
    in_cluster = ("there is no in-cluster service account" if os.environ.get("KUBERNETES_SERVICE_HOST")
                  else "this is not a Pod in a cluster (KUBERNETES_SERVICE_HOST is not set)")
    return (f"no Kubernetes cluster to talk to: KUBECONFIG is not set, {default} does not exist, "
            f"and {in_cluster}: {_FIX}")


def check_port_free(port: int, serves: str, setting: str) -> None:
    """A UserError naming the port, what it serves and the variable that sets it, when it is taken."""
    if not port:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers themselves bind: reusing a port in TIME_WAIT is fine, one in LISTEN is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError as exc:
            raise UserError(f"cannot serve {serves} on port {port}: {exc.strerror or exc}: stop what uses it, "
                            f"or set {ENV_PREFIX}{setting} to a free port") from None
