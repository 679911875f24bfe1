"""Raw TuningJob and Dataset bodies into models; a TuningJob version parsed once for all its passes.

A status or Dataset this operator cannot read counts as none (or as its phase alone); a
TuningJob spec that does not validate gives the reason, which the run's status reports.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from kubetune.api import Dataset, DatasetStatus, TuningJob, TuningJobStatus
from kubetune.api.common import ObjectMeta
from kubetune.api.errors import explain_validation_error
from kubetune.builders.names import spec_hash
from kubetune.controller.objects import Obj, version_of


def parse_tuningjob(body: Mapping[str, Any]) -> tuple[TuningJob | None, str | None]:
    """The TuningJob model, or the reason it is invalid (field path: what is wrong: what to do)."""
    try:
        return TuningJob.model_validate({**body, "status": None}), None
    except ValidationError as exc:
        return None, "; ".join(explain_validation_error(exc, TuningJob))


def parse_status(raw: Any) -> TuningJobStatus | None:
    """The status as last written; a status this operator cannot read counts as none."""
    if not raw:
        return None
    try:
        return TuningJobStatus.model_validate(raw)
    except ValidationError:
        return None


def dataset_status(raw: Any) -> DatasetStatus | None:
    try:
        return DatasetStatus.model_validate(raw) if raw else None
    except ValidationError:
        return None


def parse_dataset(raw: Mapping[str, Any], name: str) -> Dataset:
    try:
        return Dataset.model_validate(raw)
    except ValidationError:
        # A Dataset whose spec does not validate says so in its own status (Failed, set by the
        # Dataset reconciler); its phase is all a TuningJob needs to wait or fail.
        fields: dict[str, Any] = {"metadata": ObjectMeta.model_validate(raw.get("metadata") or {"name": name}),
                                  "spec": None, "status": dataset_status(raw.get("status"))}
        return Dataset.model_construct(**fields)


class ParsedTuningJob:
    """One version of a TuningJob, parsed (or why it is invalid), and its spec's hash once asked.

    Shared by the passes that see this version: nothing changes the model after parsing.
    """

    def __init__(self, version: str | None, tuningjob: TuningJob | None, error: str | None) -> None:
        self.version, self.tuningjob, self.error = version, tuningjob, error
        self._hash: str | None = None

    def spec_hash(self) -> str:
        if self._hash is None:
            assert self.tuningjob is not None
            self._hash = spec_hash(self.tuningjob.spec)
        return self._hash


class RecentlyParsed:
    """The last version parsed of the `size` TuningJobs passed over most recently (thread-safe)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._parsed: OrderedDict[tuple[str, str], ParsedTuningJob] = OrderedDict()

    def get(self, namespace: str, name: str, body: Obj) -> ParsedTuningJob:
        """This version of the TuningJob, parsed now or by an earlier pass."""
        key, version = (namespace, name), version_of(body)
        with self._lock:
            parsed = self._parsed.get(key)
        if parsed is None or version is None or parsed.version != version:
            parsed = ParsedTuningJob(version, *parse_tuningjob(body))
        with self._lock:
            self._parsed[key] = parsed
            self._parsed.move_to_end(key)
            if len(self._parsed) > self._size:
                self._parsed.popitem(last=False)
        return parsed

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._parsed.pop((namespace, name), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._parsed)
