"""Reading the job's datasets into Examples, mixing them by weight and splitting off validation.

Weights scale each training set: weight 2 uses every row twice, 0.5 a seeded half of its
rows, 1 (the default) every row once. maxSamples then caps the mix with a seeded sample
that keeps the proportions. Validation rows come from validationSplit (a seeded share of
each training set, taken before mixing so no row lands on both sides), else from the
validation entries, else a small held-out share (so the base and tuned models can be
compared; the log says so). Everything is deterministic given the seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from kubetune.api.contract import FailureReason, Mounts
from kubetune.api.dataset import DatasetFormat
from kubetune.api.tuningjob import DatasetEntry, DatasetsSpec
from kubetune_trainer.data.examples import ExampleStream
from kubetune_trainer.data.formats import Example, RowDefect
from kubetune_trainer.data.sources import SourceError, open_source
from kubetune_trainer.errors import TrainerFailure
from kubetune_trainer.gcpause import gc_paused

HOLDOUT_SHARE = 0.05
HOLDOUT_MAX = 256


@dataclass
class LoadedDataset:
    name: str
    examples: list[Example]
    fmt: DatasetFormat
    revision: str | None
    weight: float


@dataclass
class DataMix:
    train: list[Example]
    validation: list[Example]
    note: str  # how the validation rows were chosen, for the log
    formats: dict[str, DatasetFormat] = field(default_factory=dict)  # per dataset, for messages about the mix


def load_entry(entry: DatasetEntry, name: str, *, mounts: Mounts, token: str | None, labels: Sequence[str] = (),
               allow_private_urls: bool = False) -> LoadedDataset:
    """Every row of one entry as Examples; the first defective row fails the run (DatasetInvalid)."""
    if entry.source is None:
        raise TrainerFailure(FailureReason.INVALID_CONFIG,
                             f"dataset {name!r} was not resolved to a source (the operator resolves Dataset names)")
    try:
        opened = open_source(entry.source, mounts=mounts, token=token, allow_private_urls=allow_private_urls)
        rows = ExampleStream(opened, entry.format, entry.columns, labels=labels)
        if rows.format is None:
            raise _defect(name, 0, rows.undetected or RowDefect("", "cannot tell the format"))
        examples: list[Example] = []
        with gc_paused():
            for number, example in rows:
                if isinstance(example, RowDefect):
                    raise _defect(name, number, example)
                examples.append(example)
    except SourceError as error:
        raise TrainerFailure(error.reason, f"dataset {name}: {error.message}") from None
    if not examples:
        raise TrainerFailure(FailureReason.DATASET_INVALID, f"dataset {name} has no rows")
    return LoadedDataset(name=name, examples=examples, fmt=rows.format, revision=opened.revision,
                         weight=entry.weight)


def _defect(name: str, number: int, defect: RowDefect) -> TrainerFailure:
    where = f"row {number}" if number > 0 else "the data"
    field = f", field {defect.field}" if defect.field else ""
    return TrainerFailure(FailureReason.DATASET_INVALID, f"dataset {name}, {where}{field}: {defect.message}")


def _weighted(examples: list[Example], weight: float, rng: random.Random) -> list[Example]:
    whole, share = int(weight), weight - int(weight)
    picked = examples * whole
    extra = round(share * len(examples))
    if extra:
        picked += [examples[i] for i in sorted(rng.sample(range(len(examples)), extra))]
    return picked


def _split(examples: list[Example], share: float, rng: random.Random) -> tuple[list[Example], list[Example]]:
    """(train, validation): at least one row each side when there are two or more rows."""
    count = min(max(1, round(share * len(examples))), len(examples) - 1) if len(examples) > 1 else 0
    held = set(rng.sample(range(len(examples)), count))
    return ([e for i, e in enumerate(examples) if i not in held], [e for i, e in enumerate(examples) if i in held])


def mix_datasets(spec: DatasetsSpec, train_sets: list[LoadedDataset], validation_sets: list[LoadedDataset], *,
                 seed: int, max_samples: int | None) -> DataMix:
    rng = random.Random(seed)
    validation: list[Example] = []
    parts: list[list[Example]] = []
    if spec.validation_split is not None:
        note = f"validation: {spec.validation_split:.0%} of each training set (validationSplit)"
        for loaded in train_sets:
            kept, held = _split(loaded.examples, spec.validation_split, rng)
            parts.append(kept)
            validation += held
    elif validation_sets:
        note = "validation: " + ", ".join(v.name for v in validation_sets)
        parts = [loaded.examples for loaded in train_sets]
        validation = [e for v in validation_sets for e in v.examples]
    else:
        parts = []
        for loaded in train_sets:
            share = min(HOLDOUT_SHARE, HOLDOUT_MAX / max(1, len(loaded.examples)))
            kept, held = _split(loaded.examples, share, rng)
            parts.append(kept)
            validation += held
        note = (f"validation: no validation data given; held out {len(validation)} training rows "
                f"(~{HOLDOUT_SHARE:.0%}) to compare the base and tuned models")
    train: list[Example] = []
    for loaded, kept in zip(train_sets, parts, strict=True):
        train += _weighted(kept, loaded.weight, rng)
    if max_samples is not None and len(train) > max_samples:
        train = [train[i] for i in sorted(rng.sample(range(len(train)), max_samples))]
    if not train:
        raise TrainerFailure(FailureReason.DATASET_INVALID, "no training rows left after the validation split")
    formats = {loaded.name: loaded.fmt for loaded in [*train_sets, *validation_sets]}
    return DataMix(train=train, validation=validation, note=note, formats=formats)


def load_mix(spec: DatasetsSpec, names: Sequence[str], *, mounts: Mounts, token: str | None, seed: int,
             max_samples: int | None, labels: Sequence[str] = (), log: Callable[[str], None] = print,
             allow_private_urls: bool = False) -> DataMix:
    """Load every entry (train then validation) and mix them."""
    def name_of(index: int, entry: DatasetEntry) -> str:
        return names[index] if index < len(names) else entry.describe()

    train_sets = [load_entry(e, name_of(i, e), mounts=mounts, token=token, labels=labels,
                             allow_private_urls=allow_private_urls)
                  for i, e in enumerate(spec.train)]
    offset = len(spec.train)
    validation_sets = [load_entry(e, name_of(offset + i, e), mounts=mounts, token=token, labels=labels,
                                  allow_private_urls=allow_private_urls)
                       for i, e in enumerate(spec.validation)]
    for loaded in [*train_sets, *validation_sets]:
        log(f"dataset {loaded.name}: {len(loaded.examples)} rows, format {loaded.fmt.value}, "
            f"revision {loaded.revision or 'unknown'}")
    mix = mix_datasets(spec, train_sets, validation_sets, seed=seed, max_samples=max_samples)
    log(mix.note)
    return mix
