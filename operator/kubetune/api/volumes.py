"""Paths on PersistentVolumeClaims: `pvc:CLAIM/PATH` strings and paths inside a volume.

Contract, not convenience: the operator mounts the claims it reads here and the trainer
opens the paths it reads here, so both must read them the same way. A path inside a volume
is taken from the volume's root (a leading "/" changes nothing) and may not leave it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from kubetune.api.common import DNS_SUBDOMAIN

PVC_PATH_PREFIX: Final = "pvc:"


class VolumePathError(ValueError):
    """A path that names no place inside a volume. `problem` says what is wrong, `field` where."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class PvcPath:
    claim_name: str
    path: str  # inside the volume, from its root, normalised ("" is the root itself)


def path_inside_volume(path: str, field: str = "") -> str:
    """`path` relative to the volume's root: empty and "." parts dropped, ".." refused."""
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise VolumePathError(field, f"{path!r} must stay inside the volume: remove '..'")
    return "/".join(parts)


def parse_pvc_path(text: str, field: str = "") -> PvcPath | None:
    """`pvc:CLAIM/PATH` (spaces around the claim allowed) as a claim and a path; None when not a pvc: path."""
    stripped = text.strip()
    if not stripped.startswith(PVC_PATH_PREFIX):
        return None
    claim, _, inner = stripped[len(PVC_PATH_PREFIX):].strip().lstrip("/").partition("/")
    claim = claim.strip()
    if not claim:
        raise VolumePathError(field, f"{text!r} names no claim: use pvc:CLAIM/PATH")
    if not re.fullmatch(DNS_SUBDOMAIN, claim):
        raise VolumePathError(field, f"{claim!r} in {text!r} is not a PersistentVolumeClaim name "
                                     "(lowercase letters, digits, '-' and '.'): use pvc:CLAIM/PATH")
    try:
        return PvcPath(claim, path_inside_volume(inner))
    except VolumePathError:
        raise VolumePathError(field, f"{text!r} must stay inside the volume: remove '..'") from None
