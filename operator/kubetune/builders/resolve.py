"""Resolve a TuningJob (or a Dataset) into the config the trainer (or validator) reads.

Dataset references become inline sources pinned to the revision validation resolved, and
every volume the run touches gets a mount folder, so the trainer needs no API access.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from kubetune.api import (
    Dataset,
    DatasetEntry,
    DatasetFormat,
    DataSource,
    Mounts,
    RunIdentity,
    SecretKeyRef,
    TrainerConfig,
    TuningJob,
    ValidatorConfig,
    run_hash,
)
from kubetune.api.run import local_uid
from kubetune.api.volumes import VolumePathError, parse_pvc_path
from kubetune.builders.workvolume import plan_work_volume
from kubetune.settings import Settings

PVC_ROOT: Final = "/mnt/pvc"
CONFIG_MAP_ROOT: Final = "/mnt/configmaps"
# The Pod's own scratch disk (emptyDir): the work folder when the work volume is ephemeral.
WORKSPACE_DIR: Final = "/workspace"


class ResolveError(ValueError):
    """The TuningJob cannot be turned into a trainer config as it stands (reason: a condition reason)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def pvc_mount_dir(claim_name: str) -> str:
    return f"{PVC_ROOT}/{claim_name}"


def config_map_mount_dir(name: str) -> str:
    return f"{CONFIG_MAP_ROOT}/{name}"


def _mounts(sources: Iterable[DataSource], extra_claims: Iterable[str] = ()) -> Mounts:
    claims = set(extra_claims)
    config_maps: set[str] = set()
    for source in sources:
        if source.pvc is not None:
            claims.add(source.pvc.claim_name)
        if source.config_map is not None:
            config_maps.add(source.config_map.name)
    return Mounts(
        pvcs={claim: pvc_mount_dir(claim) for claim in sorted(claims)},
        config_maps={name: config_map_mount_dir(name) for name in sorted(config_maps)},
    )


def _resolve_entry(entry: DatasetEntry, datasets: Mapping[str, Dataset]) -> DatasetEntry:
    if entry.dataset is None:
        return entry
    dataset = datasets.get(entry.dataset)
    if dataset is None:
        raise ResolveError("DatasetNotFound", f"Dataset {entry.dataset!r} was not found in the namespace")
    spec, status = dataset.spec, dataset.status
    source = spec.source
    if source.hf is not None and status is not None and status.revision:
        # Train on exactly the commit that validation checked, even if the branch moves on.
        source = source.model_copy(update={"hf": source.hf.model_copy(update={"revision": status.revision})})
    data_format = spec.format
    if data_format is DatasetFormat.AUTO and status is not None and status.detected_format is not None:
        data_format = status.detected_format
    return DatasetEntry(
        source=source,
        format=data_format,
        columns=spec.columns,
        weight=entry.weight,
        token_secret_ref=spec.token_secret_ref,
    )


def data_token_ref(entries: Iterable[DatasetEntry]) -> SecretKeyRef | None:
    """The one Secret key private data sources read their token from (one env var carries it)."""
    refs = {(e.token_secret_ref.name, e.token_secret_ref.key): e.token_secret_ref
            for e in entries if e.token_secret_ref is not None}
    if len(refs) > 1:
        names = ", ".join(f"{name}/{key}" for name, key in sorted(refs))
        raise ResolveError(
            "InvalidSpec",
            f"private datasets use different token Secrets ({names}); the trainer gets one data token: "
            "put one token that reads all of them in one Secret",
        )
    return next(iter(refs.values()), None)


def resolve_trainer_config(tj: TuningJob, datasets: Mapping[str, Dataset],
                           settings: Settings | None = None) -> TrainerConfig:
    """The TuningJob with Dataset references replaced by their (pinned) sources, its mounts, its
    work volume and its run identity (uid + hash of the resolved spec).

    Raises ResolveError (reason DatasetNotFound or InvalidSpec) when it cannot be resolved.
    """
    spec = tj.spec
    settings = settings or Settings()
    work = plan_work_volume(tj, settings)
    train = [_resolve_entry(e, datasets) for e in spec.datasets.train]
    validation = [_resolve_entry(e, datasets) for e in spec.datasets.validation]
    data_token_ref([*train, *validation])
    resolved = spec.model_copy(
        update={"datasets": spec.datasets.model_copy(update={"train": train, "validation": validation})}
    )
    mismatch = resolved.objective_mismatch()  # a Dataset's format is known only now
    if mismatch:
        raise ResolveError("InvalidSpec", mismatch)

    output_claims = sorted(writable_claims(tj, settings))
    model_claims: list[str] = []
    if spec.base_model.path is not None:
        try:
            model_path = parse_pvc_path(spec.base_model.path, field="baseModel.path")
        except VolumePathError as error:
            raise ResolveError("InvalidSpec", str(error)) from None
        if model_path is not None:
            model_claims.append(model_path.claim_name)
    sources = [e.source for e in (*train, *validation) if e.source is not None]
    mounts = _mounts(sources, [*output_claims, *model_claims])

    work_dir = mounts.path_of_pvc(work.claim_name, work.path) if work.claim_name is not None else WORKSPACE_DIR
    names = [e.describe() for e in (*spec.datasets.train, *spec.datasets.validation)]
    from kubetune.builders.distributed import launch_plan  # it reports through ResolveError, defined here

    uid = tj.metadata.uid or local_uid(tj.metadata.namespace, tj.metadata.name)
    return TrainerConfig(
        name=tj.metadata.name,
        namespace=tj.metadata.namespace,
        spec=resolved,
        dataset_names=list(dict.fromkeys(names)),
        work_dir=work_dir,
        work_location=work.location,
        run=RunIdentity(uid=uid, hash=run_hash(resolved)),
        mounts=mounts,
        launch=launch_plan(tj),
    )


def writable_claims(tj: TuningJob, settings: Settings) -> set[str]:
    """Claims the trainer writes to (the output and work volumes); every other claim is mounted read-only."""
    claims = {tj.spec.output.pvc.claim_name} if tj.spec.output.pvc is not None else set()
    work = plan_work_volume(tj, settings)
    if work.claim_name is not None:
        claims.add(work.claim_name)
    return claims


def resolve_validator_config(ds: Dataset, settings: Settings) -> ValidatorConfig:
    spec = ds.spec
    return ValidatorConfig(
        name=ds.metadata.name,
        namespace=ds.metadata.namespace,
        source=spec.source,
        format=spec.format,
        columns=spec.columns,
        labels=spec.labels,
        validation=spec.validation,
        mounts=_mounts([spec.source]),
        allow_private_urls=settings.allow_private_urls,
    )
