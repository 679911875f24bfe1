"""Names, labels and owner references of what the operator creates.

Every name is a deterministic function of the owner's name (and a Dataset's generation), so
an operator restarted at any point finds what it created before instead of creating it twice.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Final

from kubetune.api import API_VERSION, TuningJobSpec

LABEL_TUNINGJOB: Final = "kubetune.io/tuningjob"
LABEL_DATASET: Final = "kubetune.io/dataset"
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
KUEUE_QUEUE_LABEL: Final = "kueue.x-k8s.io/queue-name"
# The TuningJob generation and spec hash a Job was rendered from: a later spec change is
# detected by comparing them, and a new run is a new TuningJob.
ANNOTATION_GENERATION: Final = "kubetune.io/generation"
ANNOTATION_SPEC_HASH: Final = "kubetune.io/spec-hash"
# Where the Job's run keeps its checkpoints and model (pvc:CLAIM/PATH/runs/<uid>-<runHash>): the
# status reports it from the Job, since the run hash is of the spec as resolved when the Job was made.
ANNOTATION_WORK_DIR: Final = "kubetune.io/work-dir"
# On a work volume claim kubetune created with retainPolicy Retain (it has no ownerReference).
ANNOTATION_RETAIN_POLICY: Final = "kubetune.io/retain-policy"

COMPONENT_TRAINER: Final = "trainer"
COMPONENT_PREFLIGHT: Final = "preflight"
COMPONENT_VALIDATOR: Final = "validator"
COMPONENT_WORK_VOLUME: Final = "work-volume"
MANAGED_BY: Final = "kubetune-operator"

DNS_LABEL_MAX = 63
_HASH_LEN = 8
_INVALID_LABEL_CHARS = re.compile(r"[^a-z0-9-]+")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LEN]


def standard_labels(component: str) -> dict[str, str]:
    return {LABEL_NAME: "kubetune", LABEL_COMPONENT: component, LABEL_MANAGED_BY: MANAGED_BY}


def dns_label(base: str, suffix: str = "") -> str:
    """`base` + `suffix` as a DNS-1123 label (<= 63 chars, [a-z0-9-]).

    When `base` had to be changed (too long, dots or upper case), a hash of the original is
    appended, so two different owners never map to the same name.
    """
    clean = _INVALID_LABEL_CHARS.sub("-", base.lower()).strip("-") or "x"
    if clean == base and len(clean) + len(suffix) <= DNS_LABEL_MAX:
        return clean + suffix
    room = DNS_LABEL_MAX - len(suffix) - _HASH_LEN - 1
    return f"{clean[:room].rstrip('-')}-{_digest(base)}{suffix}"


def label_value(value: str) -> str:
    """`value` as a label value (<= 63 chars); long names are cut and get a hash suffix.

    Handlers select a TuningJob's Jobs and Pods with `LABEL_TUNINGJOB=label_value(name)`.
    """
    if len(value) <= DNS_LABEL_MAX and _LABEL_VALUE.match(value):
        return value
    head = re.sub(r"[^-A-Za-z0-9_.]+", "-", value)[: DNS_LABEL_MAX - _HASH_LEN - 1].strip("-_.")
    return f"{head}-{_digest(value)}" if head else _digest(value)


def training_job_name(tuningjob_name: str) -> str:
    return dns_label(tuningjob_name, "-train")


def trainer_config_map_name(tuningjob_name: str) -> str:
    return dns_label(tuningjob_name, "-trainer-config")


def preflight_job_name(tuningjob_name: str) -> str:
    return dns_label(tuningjob_name, "-preflight")


def preflight_config_map_name(tuningjob_name: str) -> str:
    return dns_label(tuningjob_name, "-preflight-config")


def run_work_dir(work_location: str | None, work_dir: str, run_folder: str) -> str:
    """The run folder as people name it: pvc:CLAIM/PATH/runs/<run>, or emptyDir:<path> on the Pod's disk."""
    where = work_location if work_location is not None else f"emptyDir:{work_dir}"
    return f"{where.rstrip('/')}/runs/{run_folder}"


def work_volume_claim_name(tuningjob_name: str) -> str:
    return dns_label(tuningjob_name, "-work")


def validation_job_name(dataset_name: str, generation: int) -> str:
    return dns_label(dataset_name, f"-validate-g{generation}")


def validator_config_map_name(dataset_name: str, generation: int) -> str:
    return dns_label(dataset_name, f"-validator-g{generation}")


def spec_hash(spec: TuningJobSpec) -> str:
    """A short hash of a TuningJob spec, stored on its Job to notice later edits.

    `suspend` is left out: suspending and resuming steer the same run, they do not change it.
    """
    wire = spec.to_wire()
    wire.pop("suspend", None)
    canonical = json.dumps(wire, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def owner_reference(body_or_meta: Mapping[str, Any], kind: str | None = None) -> dict[str, Any]:
    """The ownerReference that makes Kubernetes delete a child with its TuningJob or Dataset.

    Takes a whole object (kind from the body) or its metadata alone (then pass `kind`).
    """
    meta = body_or_meta.get("metadata", body_or_meta)
    owner_kind = kind or body_or_meta.get("kind")
    if not owner_kind:
        raise ValueError("owner_reference needs the owner's kind: pass the whole object or kind=")
    name, uid = meta.get("name"), meta.get("uid")
    if not name or not uid:
        raise ValueError(f"owner {owner_kind} {name!r} has no uid: it must come from the API server")
    return {
        "apiVersion": API_VERSION,
        "kind": owner_kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
