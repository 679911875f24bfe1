"""The preflight Job (a CPU-only check before any GPU is used) and the pins it hands the training Job.

The preflight runs `kubetune-trainer preflight` on the same TrainerConfig the training Job
will get, from the run's own trainer image, with the same token and data volumes, but no
GPU, queue or node selector: it must not wait for what it is checking is worth waiting for.
Its ConfigMap is its own, so the training ConfigMap is written once, already pinned to the
commits the preflight resolved.
"""

from __future__ import annotations

from typing import Any, Final

from kubetune.api import Mounts, TrainerConfig, TuningJob
from kubetune.api.contract import DATA_TOKEN_ENV, HF_TOKEN_ENV
from kubetune.api.guardrails import PinnedRevisions, source_name
from kubetune.api.run import run_hash
from kubetune.api.volumes import parse_pvc_path
from kubetune.builders.jobs import config_json
from kubetune.builders.names import (
    ANNOTATION_GENERATION,
    COMPONENT_PREFLIGHT,
    LABEL_TUNINGJOB,
    label_value,
    preflight_config_map_name,
    preflight_job_name,
)
from kubetune.builders.pod import CONFIG_PATH, JobPlan, common_env, env_from_secret, render_config_map, render_job
from kubetune.builders.resolve import data_token_ref
from kubetune.settings import Settings

PREFLIGHT_CONTAINER: Final = "preflight"
PREFLIGHT_DEADLINE_SECONDS: Final = 900
# Exit code 1 (the Hub or a data host could not be reached) is retried; 2 fails the Job at once.
PREFLIGHT_BACKOFF_LIMIT: Final = 2


def build_preflight_config_map(tj: TuningJob, config: TrainerConfig, owner: dict[str, Any]) -> dict[str, Any]:
    return render_config_map(preflight_config_map_name(tj.metadata.name), tj.metadata.namespace, owner,
                             COMPONENT_PREFLIGHT, {LABEL_TUNINGJOB: label_value(tj.metadata.name)},
                             config_json(config))


def build_preflight_job(tj: TuningJob, config: TrainerConfig, settings: Settings,
                        owner: dict[str, Any]) -> dict[str, Any]:
    spec = tj.spec
    env = common_env()
    if spec.hf_token_secret_ref is not None:
        env.append(env_from_secret(HF_TOKEN_ENV, spec.hf_token_secret_ref))
    data_ref = data_token_ref([*config.spec.datasets.train, *config.spec.datasets.validation])
    if data_ref is not None:
        env.append(env_from_secret(DATA_TOKEN_ENV, data_ref))
    annotations = {ANNOTATION_GENERATION: str(tj.metadata.generation)} if tj.metadata.generation is not None else {}
    plan = JobPlan(
        name=preflight_job_name(tj.metadata.name),
        namespace=tj.metadata.namespace,
        owner=owner,
        component=COMPONENT_PREFLIGHT,
        container_name=PREFLIGHT_CONTAINER,
        selector_labels={LABEL_TUNINGJOB: label_value(tj.metadata.name)},
        image=spec.trainer_image or settings.trainer_image,
        command=["kubetune-trainer", "preflight", "--config", CONFIG_PATH],
        config_map_name=preflight_config_map_name(tj.metadata.name),
        env=env,
        resources={"requests": {"cpu": settings.validator_cpu, "memory": settings.validator_memory},
                   "limits": {"memory": settings.validator_memory}},
        mounts=preflight_mounts(config),
        annotations=annotations,
        service_account_name=spec.service_account_name,  # it may carry the image's pull secrets
        active_deadline_seconds=PREFLIGHT_DEADLINE_SECONDS,
        backoff_limit=PREFLIGHT_BACKOFF_LIMIT,
    )
    return render_job(plan)


def preflight_mounts(config: TrainerConfig) -> Mounts:
    """What the preflight reads: the data's claims and ConfigMaps and the base model's claim, all
    read-only. Not the output or work volume: the work claim is created with the training Job, and
    a ReadWriteOnce output claim is the trainer's."""
    spec = config.spec
    claims = {e.source.pvc.claim_name for e in [*spec.datasets.train, *spec.datasets.validation]
              if e.source is not None and e.source.pvc is not None}
    model_path = parse_pvc_path(spec.base_model.path) if spec.base_model.path is not None else None
    if model_path is not None:
        claims.add(model_path.claim_name)
    mounts = config.mounts
    return Mounts(pvcs={c: folder for c, folder in mounts.pvcs.items() if c in claims},
                  config_maps=dict(mounts.config_maps))


def with_gpu_memory(config: TrainerConfig, settings: Settings) -> TrainerConfig:
    """The config with resources.gpuMemory filled from the operator's default, for the preflight's estimate."""
    resources = config.spec.resources
    if resources.gpu_memory is not None or settings.gpu_memory is None:
        return config
    filled = resources.model_copy(update={"gpu_memory": settings.gpu_memory})
    spec = config.spec.model_copy(update={"resources": filled})
    return config.model_copy(update={"spec": spec})


def pin_revisions(config: TrainerConfig, pinned: PinnedRevisions | None) -> TrainerConfig:
    """The config with the base model and inline Hub datasets at the commits the preflight resolved,
    so training reads exactly what was checked even if a branch moves on."""
    if pinned is None:
        return config
    spec = config.spec
    base = spec.base_model
    if base.repo is not None and pinned.base_model_revision:
        base = base.model_copy(update={"revision": pinned.base_model_revision})
    revisions = {d.name: d.revision for d in pinned.datasets if d.revision}

    def pin(entries: list[Any]) -> list[Any]:
        out = []
        for entry in entries:
            hf = entry.source.hf if entry.source is not None else None
            revision = revisions.get(source_name(entry.source)) if hf is not None else None
            if hf is not None and revision is not None:
                entry = entry.model_copy(update={"source": entry.source.model_copy(
                    update={"hf": hf.model_copy(update={"revision": revision})})})
            out.append(entry)
        return out

    datasets = spec.datasets.model_copy(update={"train": pin(spec.datasets.train),
                                                "validation": pin(spec.datasets.validation)})
    pinned_spec = spec.model_copy(update={"base_model": base, "datasets": datasets})
    # The run is what it trains on: its identity hashes the pinned spec, as for a pinned Dataset.
    run = config.run.model_copy(update={"hash": run_hash(pinned_spec)}) if config.run is not None else None
    return config.model_copy(update={"spec": pinned_spec, "run": run})
