"""How a TuningJob trains the weights: LoRA, QLoRA or Full, and SFT or DPO (spec.method)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from kubetune.api.common import KubeModel


class TuningMethod(StrEnum):
    LORA = "LoRA"
    QLORA = "QLoRA"
    FULL = "Full"


class Objective(StrEnum):
    SFT = "sft"
    DPO = "dpo"


class QuantType(StrEnum):
    NF4 = "nf4"
    FP4 = "fp4"


class LoraSpec(KubeModel):
    """LoRA adapter shape."""

    r: int = Field(default=16, ge=1, le=1024, description="Rank of the update matrices.")
    alpha: int = Field(default=32, ge=1, le=4096, description="Scaling numerator (scale = alpha / r).")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["all-linear"], min_length=1, max_length=64,
        description="Module names to adapt; all-linear adapts every linear layer but the output head.",
    )


class QuantizationSpec(KubeModel):
    """4-bit quantization of the frozen base model (QLoRA, bitsandbytes, CUDA only)."""

    bits: Literal[4] = Field(default=4, description="Bits per weight; 4 is supported.")
    quant_type: QuantType = Field(default=QuantType.NF4, description="nf4 or fp4.")
    double_quant: bool = Field(default=True, description="Quantize the quantization constants too.")


class DpoSpec(KubeModel):
    """Direct Preference Optimization settings (objective dpo)."""

    beta: float = Field(
        default=0.1, gt=0, le=10,
        description="How far the tuned model may drift from the base model: higher keeps it closer "
                    "(trl's beta; 0.1 is the usual start, 0.01-0.5 the usual range).",
    )


class MethodSpec(KubeModel):
    """How the weights are trained."""

    type: TuningMethod = Field(default=TuningMethod.LORA, description="LoRA, QLoRA or Full.")
    objective: Objective = Field(
        default=Objective.SFT,
        description="sft: learn the answers in the data (supervised fine-tuning); dpo: learn to prefer the chosen "
                    "answer over the rejected one (Direct Preference Optimization, needs preference data). With "
                    "LoRA the reference model is the base itself (the adapter switched off).",
    )
    dpo: DpoSpec = Field(default_factory=DpoSpec, description="DPO settings, used when objective is dpo.")
    lora: LoraSpec = Field(default_factory=LoraSpec, description="Adapter shape for LoRA and QLoRA.")
    quantization: QuantizationSpec | None = Field(default=None, description="Required for QLoRA.")

    @model_validator(mode="after")
    def _quantization_matches(self) -> MethodSpec:
        if self.type is TuningMethod.QLORA and self.quantization is None:
            raise ValueError("quantization is required when type is QLoRA: add quantization: {bits: 4, quantType: nf4}")
        if self.type is not TuningMethod.QLORA and self.quantization is not None:
            raise ValueError(f"quantization applies to QLoRA only: remove it or set type: QLoRA (type is {self.type})")
        return self
