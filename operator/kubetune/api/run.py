"""A run's identity: which TuningJob (its uid) and which result-changing spec (its run hash).

The work folder of a run is `<work volume>/runs/<uid>-<runHash>/`. Another TuningJob (another
uid) never sees it, even on the same claim and path, and a spec that would train a different
model (another run hash) starts in a clean folder instead of resuming checkpoints or reusing a
final model made from something else. Fields that do not change the weights (where the model
is published, resources, scheduling, how often to log or checkpoint) are not part of the hash,
so changing them keeps the checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Final

from pydantic import Field

from kubetune.api.common import KubeModel
from kubetune.api.tuningjob import TuningJobSpec

RUNS_DIR: Final = "runs"
# Inside a run folder: the finished model, and the file written last into it (the trainer and
# the local mode both tell a finished run by it).
FINAL_DIR: Final = "final"
FINISHED_MARKER: Final = "kubetune-finished.json"
RUN_HASH_LENGTH: Final = 16
# Spec fields that decide the trained weights; see the module docstring for what is left out.
_RESULT_FIELDS: Final = ("baseModel", "task", "classification", "method", "datasets", "hyperparameters")
_BOOKKEEPING_HYPERPARAMETERS: Final = ("loggingSteps", "saveSteps", "evalSteps")
_UID_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
LOCAL_UID_PREFIX: Final = "local-"
_LOCAL_UID_MAX: Final = 100  # the run folder (uid, "-", hash) must stay well inside a file name's 255 bytes


def run_hash(spec: TuningJobSpec) -> str:
    """A short hash of what the trained model depends on (pass the resolved spec: Dataset
    references replaced by their pinned sources, so a new data revision is a new run)."""
    wire = spec.to_wire()
    picked: dict[str, Any] = {key: wire[key] for key in _RESULT_FIELDS if key in wire}
    for key in _BOOKKEEPING_HYPERPARAMETERS:
        picked.get("hyperparameters", {}).pop(key, None)
    for group in ("train", "validation"):
        for entry in picked.get("datasets", {}).get(group, []):
            entry.pop("tokenSecretRef", None)  # which Secret holds the token does not change the data
    # merge adds a merged model to the final folder: a final/ made without it is not this run's.
    picked["merge"] = bool(wire.get("output", {}).get("merge"))
    canonical = json.dumps(picked, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:RUN_HASH_LENGTH]


def local_uid(namespace: str, name: str) -> str:
    """The uid the local mode gives a TuningJob (no API server hands one out): one per namespace/name."""
    key = f"{namespace}.{name}"
    uid = LOCAL_UID_PREFIX + _UID_CHARS.sub("-", key)
    if len(uid) <= _LOCAL_UID_MAX:
        return uid
    return f"{uid[:_LOCAL_UID_MAX - 9]}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


class RunIdentity(KubeModel):
    """Which run a work folder belongs to."""

    uid: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$",
                     description="metadata.uid of the TuningJob (the local mode makes one from its name).")
    hash: str = Field(pattern=rf"^[0-9a-f]{{{RUN_HASH_LENGTH}}}$",
                      description="run_hash of the resolved spec.")

    @property
    def folder_name(self) -> str:
        return f"{self.uid}-{self.hash}"

    def is_earlier_spec(self, folder_name: str) -> bool:
        """Whether `folder_name` is a run folder of the same TuningJob made from another spec."""
        return (folder_name != self.folder_name
                and re.fullmatch(rf"{re.escape(self.uid)}-[0-9a-f]{{{RUN_HASH_LENGTH}}}", folder_name) is not None)
