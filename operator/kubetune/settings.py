"""Operator settings, read once from environment variables.

The Helm chart sets these; `kubetune operator --help` and README list them.
Everything has a default so that `kubetune operator` runs with no configuration.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from kubetune.api.common import BYTE_QUANTITY
from kubetune.usererror import UserError

ENV_PREFIX = "KUBETUNE_"


def _env(name: str, default: str) -> str:
    return os.environ.get(ENV_PREFIX + name, default)


def _env_int(name: str, default: int) -> int:
    raw = _env(name, str(default))
    try:
        return int(raw)
    except ValueError as exc:
        raise UserError(f"{ENV_PREFIX}{name} must be an integer, got {raw!r}: set it to a number "
                        f"or unset it (default {default})") from exc


def _env_positive(name: str, default: int) -> int:
    value = _env_int(name, default)
    if value < 1:
        raise UserError(f"{ENV_PREFIX}{name} must be at least 1, got {value}: set it to a positive number "
                        f"or unset it (default {default})")
    return value


def _env_bool(name: str, default: bool) -> bool:
    raw = _env(name, "true" if default else "false").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off", ""):
        return False
    raise UserError(f"{ENV_PREFIX}{name} must be true or false, got {raw!r}: set it to true or false "
                    f"or unset it (default {'true' if default else 'false'})")


def _env_quantity(name: str, default: str) -> str:
    raw = _env(name, default).strip()
    if not re.match(BYTE_QUANTITY, raw):
        raise UserError(f"{ENV_PREFIX}{name} must be a byte quantity such as 50Gi, got {raw!r}: fix it or unset "
                        f"it (default {default})")
    return raw


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in _env(name, "").split(",") if item.strip()]


def _env_optional_quantity(name: str, default: str | None) -> str | None:
    raw = _env(name, default or "").strip()
    if raw and not re.fullmatch(BYTE_QUANTITY, raw):
        raise UserError(f"{ENV_PREFIX}{name} must be a byte quantity such as 80Gi, got {raw!r}: fix it, or set "
                        "it empty to skip the comparison")
    return raw or None


@dataclass(frozen=True)
class Settings:
    """What the operator needs to know that is not in a TuningJob or Dataset."""

    trainer_image: str = "ghcr.io/kubetune/trainer:0.1.0"
    """Image for training and validation Jobs when a TuningJob names none (KUBETUNE_TRAINER_IMAGE)."""
    gpu_resource_name: str = "nvidia.com/gpu"
    """Extended resource requested for GPUs when a TuningJob names none (KUBETUNE_GPU_RESOURCE_NAME)."""
    trainer_cpu: str = "4"
    """Default CPU request of a training container (KUBETUNE_TRAINER_CPU)."""
    trainer_memory: str = "32Gi"
    """Default memory request and limit of a training container (KUBETUNE_TRAINER_MEMORY)."""
    trainer_termination_grace_seconds: int = 600
    """Seconds a stopped trainer Pod gets to save a checkpoint when a TuningJob names none
    (KUBETUNE_TRAINER_TERMINATION_GRACE_SECONDS)."""
    work_volume_size: str = "50Gi"
    """Size of the work volume claim kubetune creates when a TuningJob names none (KUBETUNE_WORK_VOLUME_SIZE)."""
    work_volume_storage_class: str = ""
    """StorageClass of the created work volume claims; empty means the cluster's default
    (KUBETUNE_WORK_VOLUME_STORAGE_CLASS)."""
    work_volume_ephemeral: bool = False
    """Keep work folders on the Pods' own disks unless a TuningJob names a volume: for clusters
    without persistent storage; a new Pod then trains from step 0 (KUBETUNE_WORK_VOLUME_EPHEMERAL)."""
    validator_cpu: str = "500m"
    """CPU request of a dataset validation container (KUBETUNE_VALIDATOR_CPU)."""
    validator_memory: str = "1Gi"
    """Memory request and limit of a dataset validation container (KUBETUNE_VALIDATOR_MEMORY)."""
    namespaces: list[str] = field(default_factory=list)
    """Namespaces to watch; empty means all (KUBETUNE_NAMESPACES, comma-separated)."""
    log_tail_lines: int = 20
    """Lines of trainer log kept in status.logTail (KUBETUNE_LOG_TAIL_LINES)."""
    status_refresh_seconds: int = 15
    """How often a running job's progress is read from its Pod log (KUBETUNE_STATUS_REFRESH_SECONDS)."""
    log_reads_per_second: int = 20
    """At most this many trainer log reads a second across all running jobs: beyond
    statusRefreshSeconds x this many running jobs, each one's log is read less often
    (KUBETUNE_LOG_READS_PER_SECOND)."""
    workers: int = 8
    """Threads reconciling TuningJobs and Datasets at once; each waits on the API server most of a
    pass, so a few more than the cores keep both busy (KUBETUNE_WORKERS)."""
    metrics_port: int = 8080
    """Port of the Prometheus /metrics endpoint; 0 disables it (KUBETUNE_METRICS_PORT)."""
    health_port: int = 8081
    """Port of kopf's liveness endpoint /healthz (KUBETUNE_HEALTH_PORT)."""
    log_level: str = "INFO"
    """Operator log level (KUBETUNE_LOG_LEVEL)."""
    allow_private_urls: bool = False
    """Allow dataset URLs on loopback, link-local and private ranges (KUBETUNE_ALLOW_PRIVATE_URLS)."""
    gpu_memory: str | None = "80Gi"
    """Memory of one GPU for the preflight's fit estimate when a TuningJob names none; empty: no
    estimate against a size (KUBETUNE_GPU_MEMORY)."""

    @classmethod
    def from_env(cls) -> Settings:
        defaults = cls()
        return cls(
            trainer_image=_env("TRAINER_IMAGE", defaults.trainer_image),
            gpu_resource_name=_env("GPU_RESOURCE_NAME", defaults.gpu_resource_name),
            trainer_cpu=_env("TRAINER_CPU", defaults.trainer_cpu),
            trainer_memory=_env("TRAINER_MEMORY", defaults.trainer_memory),
            trainer_termination_grace_seconds=_env_int("TRAINER_TERMINATION_GRACE_SECONDS",
                                                       defaults.trainer_termination_grace_seconds),
            work_volume_size=_env_quantity("WORK_VOLUME_SIZE", defaults.work_volume_size),
            work_volume_storage_class=_env("WORK_VOLUME_STORAGE_CLASS", defaults.work_volume_storage_class),
            work_volume_ephemeral=_env_bool("WORK_VOLUME_EPHEMERAL", defaults.work_volume_ephemeral),
            validator_cpu=_env("VALIDATOR_CPU", defaults.validator_cpu),
            validator_memory=_env("VALIDATOR_MEMORY", defaults.validator_memory),
            namespaces=_env_list("NAMESPACES"),
            log_tail_lines=_env_int("LOG_TAIL_LINES", defaults.log_tail_lines),
            status_refresh_seconds=_env_int("STATUS_REFRESH_SECONDS", defaults.status_refresh_seconds),
            log_reads_per_second=_env_positive("LOG_READS_PER_SECOND", defaults.log_reads_per_second),
            workers=_env_positive("WORKERS", defaults.workers),
            metrics_port=_env_int("METRICS_PORT", defaults.metrics_port),
            health_port=_env_int("HEALTH_PORT", defaults.health_port),
            log_level=_env("LOG_LEVEL", defaults.log_level).upper(),
            allow_private_urls=_env_bool("ALLOW_PRIVATE_URLS", defaults.allow_private_urls),
            gpu_memory=_env_optional_quantity("GPU_MEMORY", defaults.gpu_memory),
        )
