"""Pure builders: typed TuningJob/Dataset models in, plain-dict Kubernetes manifests out.

No I/O here: the handlers create what these functions render, the local mode reuses the
resolved configs. Every output is deterministic, so re-rendering is a no-op.
"""

from kubetune.api.volumes import parse_pvc_path
from kubetune.builders.distributed import build_rendezvous_service, launch_plan, rendezvous_service_name
from kubetune.builders.jobs import (
    TRAINER_CONTAINER,
    VALIDATOR_CONTAINER,
    build_trainer_config_map,
    build_training_job,
    build_validation_job,
    build_validator_config_map,
    config_json,
)
from kubetune.builders.names import (
    ANNOTATION_GENERATION,
    ANNOTATION_SPEC_HASH,
    ANNOTATION_WORK_DIR,
    KUEUE_QUEUE_LABEL,
    LABEL_DATASET,
    LABEL_TUNINGJOB,
    dns_label,
    label_value,
    owner_reference,
    spec_hash,
    trainer_config_map_name,
    training_job_name,
    validation_job_name,
    validator_config_map_name,
    work_volume_claim_name,
)
from kubetune.builders.pod import CONFIG_DIR, CONFIG_PATH
from kubetune.builders.resolve import (
    ResolveError,
    data_token_ref,
    resolve_trainer_config,
    resolve_validator_config,
)
from kubetune.builders.workvolume import WorkVolumePlan, build_work_volume_claim, plan_work_volume

__all__ = [
    "ANNOTATION_GENERATION", "ANNOTATION_SPEC_HASH", "ANNOTATION_WORK_DIR", "CONFIG_DIR", "CONFIG_PATH",
    "KUEUE_QUEUE_LABEL", "LABEL_DATASET", "LABEL_TUNINGJOB", "TRAINER_CONTAINER", "VALIDATOR_CONTAINER",
    "ResolveError", "WorkVolumePlan", "build_rendezvous_service", "build_trainer_config_map", "build_training_job",
    "build_validation_job", "build_validator_config_map", "build_work_volume_claim", "config_json", "data_token_ref",
    "dns_label", "label_value", "launch_plan", "owner_reference", "parse_pvc_path", "plan_work_volume",
    "rendezvous_service_name", "resolve_trainer_config", "resolve_validator_config", "spec_hash",
    "trainer_config_map_name", "training_job_name", "validation_job_name", "validator_config_map_name",
    "work_volume_claim_name",
]
