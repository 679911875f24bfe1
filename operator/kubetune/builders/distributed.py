"""A run over several nodes: its LaunchPlan, the headless Service its Pods meet through.

One node: the trainer's launcher starts one process per GPU with a private rendezvous; the
Job is the plain one-Pod Job. Several nodes: an Indexed Job with one Pod per node
(completions = parallelism = nodes), whose Pods get stable host names `<job>-<index>`
under a headless Service (the Pods' `subdomain`); Pod 0 hosts torchrun's c10d rendezvous
at `<job>-0.<service>:29500`. Kueue admits such a Job as one workload of `nodes` Pods, all
or none, and the podFailurePolicy is the same as for one Pod.
"""

from __future__ import annotations

from typing import Any, Final

from kubetune.api import LaunchPlan, TuningJob
from kubetune.api.distributed import RENDEZVOUS_PORT
from kubetune.builders.names import (
    COMPONENT_TRAINER,
    DNS_LABEL_MAX,
    LABEL_COMPONENT,
    LABEL_TUNINGJOB,
    dns_label,
    label_value,
    training_job_name,
)
from kubetune.builders.pod import standard_labels
from kubetune.builders.resolve import ResolveError

RENDEZVOUS_PORT_NAME: Final = "rendezvous"


def rendezvous_service_name(tuningjob_name: str) -> str:
    """The headless Service of a multi-node run (a DNS-1035 label: it must start with a letter)."""
    base = tuningjob_name if tuningjob_name[:1].isalpha() else f"tj-{tuningjob_name}"
    return dns_label(base, "-nodes")


def launch_plan(tj: TuningJob) -> LaunchPlan:
    """How many processes on how many nodes, and where they meet."""
    resources = tj.spec.resources
    name = tj.metadata.name
    run_id = tj.metadata.uid or name
    processes = max(1, resources.gpus)
    if resources.nodes == 1:
        return LaunchPlan(nodes=1, processes_per_node=processes, run_id=run_id)
    job = training_job_name(name)
    longest_host = f"{job}-{resources.nodes - 1}"
    if len(longest_host) > DNS_LABEL_MAX:
        room = len(name) - (len(longest_host) - DNS_LABEL_MAX)
        raise ResolveError("InvalidSpec",
                           f"resources.nodes {resources.nodes}: the Pods' host names ({longest_host}) would be longer "
                           f"than {DNS_LABEL_MAX} characters; give the TuningJob a name of at most {room} characters")
    endpoint = f"{job}-0.{rendezvous_service_name(name)}:{RENDEZVOUS_PORT}"
    return LaunchPlan(nodes=resources.nodes, processes_per_node=processes, rendezvous_endpoint=endpoint,
                      run_id=run_id)


def build_rendezvous_service(tj: TuningJob, owner: dict[str, Any]) -> dict[str, Any]:
    """The headless Service that gives each Pod of a multi-node run a DNS name."""
    selector = {LABEL_TUNINGJOB: label_value(tj.metadata.name), LABEL_COMPONENT: COMPONENT_TRAINER}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": rendezvous_service_name(tj.metadata.name),
            "namespace": tj.metadata.namespace,
            "labels": {**standard_labels(COMPONENT_TRAINER), LABEL_TUNINGJOB: label_value(tj.metadata.name)},
            "ownerReferences": [dict(owner)],
        },
        "spec": {
            "clusterIP": "None",
            "selector": selector,
            # Pod 0's name must resolve while it starts, before anything could call it ready.
            "publishNotReadyAddresses": True,
            "ports": [{"name": RENDEZVOUS_PORT_NAME, "port": RENDEZVOUS_PORT, "targetPort": RENDEZVOUS_PORT,
                       "protocol": "TCP"}],
        },
    }
