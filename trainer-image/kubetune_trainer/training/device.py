"""What the device can do: the precision actually used, and refusing QLoRA without CUDA early."""

from __future__ import annotations

from dataclasses import dataclass

from kubetune.api.contract import FailureReason
from kubetune.api.hyperparameters import Precision
from kubetune.api.method import TuningMethod
from kubetune_trainer.errors import TrainerFailure


@dataclass(frozen=True)
class DevicePlan:
    cuda: bool
    precision: Precision  # what is used, which may differ from what was asked
    warning: str | None  # set when the precision fell back

    @property
    def bf16(self) -> bool:
        return self.precision is Precision.BF16

    @property
    def fp16(self) -> bool:
        return self.precision is Precision.FP16


def check_method_supported(method: TuningMethod) -> None:
    """QLoRA needs CUDA and bitsandbytes: say so before any model or data is loaded."""
    if method is not TuningMethod.QLORA:
        return
    import torch

    if not torch.cuda.is_available():
        raise TrainerFailure(
            FailureReason.UNSUPPORTED_DEVICE,
            "QLoRA needs a CUDA GPU (bitsandbytes 4-bit), and none is visible: request a GPU "
            "(spec.resources.gpus) or use method LoRA or Full",
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise TrainerFailure(
            FailureReason.UNSUPPORTED_DEVICE,
            "QLoRA needs the bitsandbytes package, which this trainer image lacks: use the kubetune trainer image",
        ) from None


def plan_device(requested: Precision) -> DevicePlan:
    """bf16 where supported, else fp16 on CUDA, else fp32; a warning says when that is not what was asked."""
    import torch

    cuda = torch.cuda.is_available()
    if not cuda:
        used = Precision.FP32
        where = "this machine has no CUDA GPU"
    elif requested is Precision.BF16 and not torch.cuda.is_bf16_supported():
        used = Precision.FP16
        where = "this GPU does not support bf16"
    else:
        used, where = requested, ""
    warning = None
    if used is not requested:
        warning = f"precision {requested.value} requested but {where}: training in {used.value}"
    return DevicePlan(cuda=cuda, precision=used, warning=warning)
