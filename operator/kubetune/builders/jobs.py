"""Training and validation Jobs and their config ConfigMaps, rendered as plain dicts."""

from __future__ import annotations

import json
from typing import Any, Final

from kubetune.api import Dataset, TrainerConfig, TuningJob, ValidatorConfig
from kubetune.api.common import KubeModel
from kubetune.api.contract import DATA_TOKEN_ENV, HF_TOKEN_ENV
from kubetune.builders.distributed import rendezvous_service_name
from kubetune.builders.names import (
    ANNOTATION_GENERATION,
    ANNOTATION_SPEC_HASH,
    ANNOTATION_WORK_DIR,
    COMPONENT_TRAINER,
    COMPONENT_VALIDATOR,
    KUEUE_QUEUE_LABEL,
    LABEL_DATASET,
    LABEL_TUNINGJOB,
    label_value,
    run_work_dir,
    spec_hash,
    trainer_config_map_name,
    training_job_name,
    validation_job_name,
    validator_config_map_name,
)
from kubetune.builders.pod import (
    CONFIG_PATH,
    JobPlan,
    common_env,
    env_from_secret,
    env_value,
    render_config_map,
    render_job,
)
from kubetune.builders.resolve import data_token_ref, writable_claims
from kubetune.settings import Settings

TRAINER_CONTAINER: Final = "trainer"
VALIDATOR_CONTAINER: Final = "validator"
VALIDATION_DEADLINE_SECONDS: Final = 3600
VALIDATION_BACKOFF_LIMIT: Final = 1
# Validation Jobs are per generation; a day keeps the last one around for `kubectl logs`.
VALIDATION_TTL_SECONDS: Final = 86400


def config_json(config: KubeModel) -> str:
    """The config as the ConfigMap holds it: stable key order, so re-rendering changes nothing.

    Not indented: json's indenting encoder is pure Python, 20x slower than the C one, and this
    was 40% of the operator's CPU for each new TuningJob (bench/control_plane.py).
    """
    return json.dumps(config.to_wire(), sort_keys=True)


def _tuningjob_labels(tj: TuningJob) -> dict[str, str]:
    return {LABEL_TUNINGJOB: label_value(tj.metadata.name)}


def _dataset_labels(ds: Dataset) -> dict[str, str]:
    return {LABEL_DATASET: label_value(ds.metadata.name)}


def _generation(meta_generation: int | None) -> int:
    return meta_generation if meta_generation is not None else 1


def build_trainer_config_map(tj: TuningJob, config: TrainerConfig, owner: dict[str, Any]) -> dict[str, Any]:
    return render_config_map(trainer_config_map_name(tj.metadata.name), tj.metadata.namespace, owner,
                             COMPONENT_TRAINER, _tuningjob_labels(tj), config_json(config))


def build_training_job(tj: TuningJob, config: TrainerConfig, settings: Settings,
                       owner: dict[str, Any]) -> dict[str, Any]:
    spec = tj.spec
    env = common_env()
    endpoint = spec.output.endpoint or spec.base_model.endpoint
    if endpoint:
        env.append(env_value("HF_ENDPOINT", endpoint))
    if spec.hf_token_secret_ref is not None:
        env.append(env_from_secret(HF_TOKEN_ENV, spec.hf_token_secret_ref))
    data_ref = data_token_ref([*config.spec.datasets.train, *config.spec.datasets.validation])
    if data_ref is not None:
        env.append(env_from_secret(DATA_TOKEN_ENV, data_ref))

    memory = spec.resources.memory or settings.trainer_memory
    limits: dict[str, str] = {"memory": memory}
    if spec.resources.gpus > 0:
        limits[spec.resources.gpu_resource_name or settings.gpu_resource_name] = str(spec.resources.gpus)
    resources = {"requests": {"cpu": spec.resources.cpu or settings.trainer_cpu, "memory": memory},
                 "limits": limits}

    annotations = {ANNOTATION_SPEC_HASH: spec_hash(spec)}
    if config.run is not None:
        annotations[ANNOTATION_WORK_DIR] = run_work_dir(config.work_location, config.work_dir, config.run.folder_name)
    if tj.metadata.generation is not None:
        annotations[ANNOTATION_GENERATION] = str(tj.metadata.generation)
    job_labels = {KUEUE_QUEUE_LABEL: spec.queue_name} if spec.queue_name else {}
    plan = JobPlan(
        name=training_job_name(tj.metadata.name),
        namespace=tj.metadata.namespace,
        owner=owner,
        component=COMPONENT_TRAINER,
        container_name=TRAINER_CONTAINER,
        selector_labels=_tuningjob_labels(tj),
        image=spec.trainer_image or settings.trainer_image,
        command=["kubetune-trainer", "train", "--config", CONFIG_PATH],
        config_map_name=trainer_config_map_name(tj.metadata.name),
        env=env,
        resources=resources,
        mounts=config.mounts,
        writable_claims=frozenset(writable_claims(tj, settings)),
        shm_size=spec.resources.shm_size,
        job_labels=job_labels,
        annotations=annotations,
        node_selector=spec.node_selector,
        tolerations=spec.tolerations,
        priority_class_name=spec.priority_class_name,
        service_account_name=spec.service_account_name,
        # Kueue admits a queued Job by unsuspending it, so a queued Job starts suspended.
        suspend=spec.suspend or bool(spec.queue_name),
        active_deadline_seconds=spec.active_deadline_seconds,
        # A node that fails takes its peers down with it: backoffLimit counts attempts of the whole run.
        backoff_limit=spec.backoff_limit * spec.resources.nodes,
        ttl_seconds_after_finished=spec.ttl_seconds_after_finished,
        nodes=spec.resources.nodes,
        subdomain=rendezvous_service_name(tj.metadata.name) if spec.resources.nodes > 1 else None,
        # Room to finish the step and save a checkpoint after SIGTERM (preemption, drain, suspend).
        termination_grace_period_seconds=(spec.termination_grace_period_seconds
                                          or settings.trainer_termination_grace_seconds),
    )
    return render_job(plan)


def build_validator_config_map(ds: Dataset, config: ValidatorConfig, owner: dict[str, Any]) -> dict[str, Any]:
    name = validator_config_map_name(ds.metadata.name, _generation(ds.metadata.generation))
    return render_config_map(name, ds.metadata.namespace, owner, COMPONENT_VALIDATOR, _dataset_labels(ds),
                             config_json(config))


def build_validation_job(ds: Dataset, config: ValidatorConfig, settings: Settings,
                         owner: dict[str, Any]) -> dict[str, Any]:
    generation = _generation(ds.metadata.generation)
    env = common_env()
    if config.source.hf is not None and config.source.hf.endpoint:
        env.append(env_value("HF_ENDPOINT", config.source.hf.endpoint))
    if ds.spec.token_secret_ref is not None:
        env.append(env_from_secret(DATA_TOKEN_ENV, ds.spec.token_secret_ref))
    resources = {"requests": {"cpu": settings.validator_cpu, "memory": settings.validator_memory},
                 "limits": {"memory": settings.validator_memory}}
    plan = JobPlan(
        name=validation_job_name(ds.metadata.name, generation),
        namespace=ds.metadata.namespace,
        owner=owner,
        component=COMPONENT_VALIDATOR,
        container_name=VALIDATOR_CONTAINER,
        selector_labels=_dataset_labels(ds),
        image=settings.trainer_image,
        command=["kubetune-trainer", "validate", "--config", CONFIG_PATH],
        config_map_name=validator_config_map_name(ds.metadata.name, generation),
        env=env,
        resources=resources,
        mounts=config.mounts,
        annotations={ANNOTATION_GENERATION: str(generation)},
        active_deadline_seconds=VALIDATION_DEADLINE_SECONDS,
        backoff_limit=VALIDATION_BACKOFF_LIMIT,
        ttl_seconds_after_finished=VALIDATION_TTL_SECONDS,
    )
    return render_job(plan)
