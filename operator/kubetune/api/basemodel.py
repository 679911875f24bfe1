"""The model a TuningJob fine-tunes: a Hub repo, a folder on a volume, or a tiny scratch model (spec.baseModel)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from kubetune.api.common import HUB_REPO, KubeModel
from kubetune.api.volumes import VolumePathError, parse_pvc_path


class ScratchModel(KubeModel):
    """A tiny randomly initialised Llama with a tokenizer trained on the data: for smoke tests and demos."""

    hidden_size: int = Field(default=64, ge=8, le=4096, description="Hidden size.")
    intermediate_size: int = Field(default=128, ge=8, le=16384, description="MLP size.")
    num_layers: int = Field(default=2, ge=1, le=48, description="Decoder layers.")
    num_heads: int = Field(default=4, ge=1, le=64, description="Attention heads.")
    num_key_value_heads: int = Field(default=2, ge=1, le=64, description="Key/value heads (GQA).")
    vocab_size: int = Field(default=512, ge=64, le=65536, description="Tokenizer vocabulary size.")

    @model_validator(mode="after")
    def _heads_divide(self) -> ScratchModel:
        if self.hidden_size % self.num_heads:
            raise ValueError("hiddenSize must be a multiple of numHeads")
        if self.num_heads % self.num_key_value_heads:
            raise ValueError("numHeads must be a multiple of numKeyValueHeads")
        return self


class BaseModelSpec(KubeModel):
    """The model to fine-tune. Set exactly one of repo, path, scratch."""

    repo: str | None = Field(default=None, max_length=200, pattern=HUB_REPO,
                             description="Hugging Face model repo, e.g. mistralai/Ministral-8B-Instruct-2410.")
    revision: str = Field(default="main", min_length=1, max_length=200,
                          description="Branch, tag or commit sha of repo; the commit used is reported.")
    path: str | None = Field(default=None, max_length=4096,
                             description="A model folder on a mounted volume (pvc:CLAIM/PATH or an absolute path).")
    scratch: ScratchModel | None = Field(default=None, description="A tiny random model, for smoke tests.")
    endpoint: str | None = Field(default=None, pattern=r"^https?://", max_length=2048,
                                 description="Hub endpoint for a self-hosted hub; the public hub when unset.")

    @field_validator("path")
    @classmethod
    def _pvc_path_inside_its_volume(cls, path: str | None) -> str | None:
        try:
            parse_pvc_path(path or "")
        except VolumePathError as error:
            raise ValueError(error.problem) from None
        return path

    @model_validator(mode="after")
    def _exactly_one(self) -> BaseModelSpec:
        given = [n for n, v in (("repo", self.repo), ("path", self.path), ("scratch", self.scratch)) if v is not None]
        if len(given) != 1:
            raise ValueError(f"set exactly one of repo, path, scratch (found: {', '.join(given) or 'none'})")
        return self

    def describe(self) -> str:
        if self.repo is not None:
            return self.repo
        if self.path is not None:
            return self.path
        return "scratch"
