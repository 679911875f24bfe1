"""Builders for distributed runs: several GPUs in one Pod, and several nodes as an Indexed Job + headless Service."""

from __future__ import annotations

import pytest
from test_builders import _round_trip, container, datasets, make_tj, pod_spec, render

from kubetune.api.distributed import RENDEZVOUS_PORT, effective_batch_size, world_size
from kubetune.builders import (
    ResolveError,
    build_rendezvous_service,
    launch_plan,
    owner_reference,
    rendezvous_service_name,
    resolve_trainer_config,
    training_job_name,
)


def test_one_pod_with_several_gpus_stays_a_plain_job_with_one_process_per_gpu() -> None:
    job, _, config = render({"resources": {"gpus": 8}})
    assert "completionMode" not in job["spec"] and "subdomain" not in pod_spec(job)
    assert container(job)["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert (config.launch.nodes, config.launch.processes_per_node, config.launch.world_size) == (1, 8, 8)
    assert config.launch.rendezvous_endpoint is None
    # The command does not change: the trainer starts torchrun itself when the config asks for processes.
    assert container(job)["command"] == ["kubetune-trainer", "train", "--config", "/etc/kubetune/config.json"]


def test_several_nodes_render_an_indexed_job_under_a_headless_service() -> None:
    job, _, config = render({"resources": {"gpus": 4, "nodes": 3}, "backoffLimit": 2})
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 3, 3)
    service = rendezvous_service_name("ministral-support")
    assert pod_spec(job)["subdomain"] == service
    # Each Pod asks for its own node's GPUs; there are 3 x 4 processes in all.
    assert container(job)["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert (config.launch.nodes, config.launch.processes_per_node, config.launch.world_size) == (3, 4, 12)
    assert config.launch.rendezvous_endpoint == \
        f"{training_job_name('ministral-support')}-0.{service}:{RENDEZVOUS_PORT}"
    assert config.launch.run_id == "tj-uid-1"
    # One failed node fails its peers too: the limit counts whole-run attempts.
    assert spec["backoffLimit"] == 2 * 3
    # The podFailurePolicy is the one-Pod Job's (exit code 2 fails the Job, evictions are not counted).
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "FailJob" and rules[1]["action"] == "Ignore"
    assert _round_trip(job, "V1Job") == job, "only real Job fields (the client drops unknown ones)"


def test_queued_multi_node_job_is_one_suspended_job_for_kueue_to_admit_whole() -> None:
    job, _, _ = render({"resources": {"nodes": 2}, "queueName": "team-a"})
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert job["spec"]["parallelism"] == job["spec"]["completions"] == 2


def test_rendezvous_service_is_headless_selects_the_trainer_pods_and_is_owned() -> None:
    tj = make_tj({"resources": {"nodes": 2}})
    owner = owner_reference(tj.model_dump(mode="json", by_alias=True))
    service = build_rendezvous_service(tj, owner)
    job, _, _ = render({"resources": {"nodes": 2}})
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    selector = service["spec"]["selector"]
    assert selector and selector.items() <= pod_labels.items(), "it selects the run's trainer Pods"
    assert service["spec"]["ports"] == [{"name": "rendezvous", "port": RENDEZVOUS_PORT, "targetPort": RENDEZVOUS_PORT,
                                         "protocol": "TCP"}]
    assert service["metadata"]["ownerReferences"] == [owner]
    assert service["metadata"]["namespace"] == "ml"
    assert _round_trip(service, "V1Service") == service


@pytest.mark.parametrize(("name", "expected"), [("ministral-support", "ministral-support-nodes"),
                                                ("7b-run", "tj-7b-run-nodes")])
def test_service_name_is_a_dns_1035_label(name: str, expected: str) -> None:
    assert rendezvous_service_name(name) == expected


def test_a_name_too_long_for_the_pod_host_names_is_refused_with_the_length_to_use() -> None:
    tj = make_tj({"resources": {"nodes": 12}}, name="n" * 57)
    with pytest.raises(ResolveError) as raised:
        resolve_trainer_config(tj, datasets())
    assert raised.value.reason == "InvalidSpec"
    assert "resources.nodes 12" in raised.value.message and "at most 54 characters" in raised.value.message
    assert launch_plan(make_tj({"resources": {"nodes": 12}}, name="n" * 54)).nodes == 12


def test_cpu_nodes_run_one_process_each() -> None:
    plan = launch_plan(make_tj({"resources": {"gpus": 0, "nodes": 2}}))
    assert (plan.processes_per_node, plan.world_size) == (1, 2)


def test_world_size_and_effective_batch() -> None:
    assert world_size(nodes=2, gpus=8) == 16
    assert world_size(nodes=3, gpus=0) == 3
    assert effective_batch_size(per_device=4, world=16, accumulation=2) == 128


def test_fsdp_with_qlora_is_refused_by_the_spec() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="FSDP does not combine with QLoRA"):
        make_tj({"method": {"type": "QLoRA", "quantization": {"bits": 4}}, "distributed": {"strategy": "FSDP"}})


def test_the_work_volume_of_a_multi_node_run_is_mounted_on_every_node() -> None:
    from pydantic import ValidationError
    from test_builders import SETTINGS

    from kubetune.builders import build_work_volume_claim

    tj = make_tj({"resources": {"nodes": 2}})
    claim = build_work_volume_claim(tj, SETTINGS, owner_reference(tj.model_dump(mode="json", by_alias=True)))
    assert claim is not None and claim["spec"]["accessModes"] == ["ReadWriteMany"]
    one_node = make_tj()
    single = build_work_volume_claim(one_node, SETTINGS, owner_reference(one_node.model_dump(mode="json",
                                                                                         by_alias=True)))
    assert single is not None and single["spec"]["accessModes"] == ["ReadWriteOnce"]
    with pytest.raises(ValidationError, match="mounts its work volume on each of them"):
        make_tj({"resources": {"nodes": 2}, "workVolume": {"accessModes": ["ReadWriteOnce"]}})
