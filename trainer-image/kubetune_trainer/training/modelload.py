"""The base model: found (Hub, volume, scratch), pinned to a commit, loaded and wrapped for the method."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune.api.basemodel import BaseModelSpec
from kubetune.api.contract import FailureReason, Mounts
from kubetune.api.method import MethodSpec, TuningMethod
from kubetune.api.tuningjob import Task
from kubetune.api.volumes import VolumePathError, parse_pvc_path
from kubetune_trainer.data.chattemplate import CHATML_TEMPLATE
from kubetune_trainer.errors import TrainerFailure
from kubetune_trainer.training.device import DevicePlan

# Weights in formats the trainer does not load; skipping them saves downloading a model twice.
_SKIP_ALWAYS = ["*.pth", "*.pt", "*.gguf", "*.onnx", "*.onnx_data", "*.msgpack", "*.h5", "*.ot", "original/*"]
SCRATCH_FOLDER = "scratch-base"
# A download that fails on these is the volume's fault (full, read-only), not the Hub's: retrying cannot help.
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES})


@dataclass(frozen=True)
class ResolvedModel:
    folder: Path  # a local folder from_pretrained can load
    name: str  # repo id, path or "scratch", for logs and the model card
    revision: str | None  # Hub commit sha
    scratch: bool


def resolve_base_model(
    spec: BaseModelSpec, *, work_dir: Path, mounts: Mounts, token: str | None, seed: int,
    scratch_texts: Callable[[], Iterable[str]], log: Callable[[str], None] = print,
) -> ResolvedModel:
    if spec.scratch is not None:
        return _scratch(spec, work_dir, seed, scratch_texts, log)
    if spec.path is not None:
        return ResolvedModel(folder=_local_path(spec.path, mounts), name=spec.path, revision=None, scratch=False)
    assert spec.repo is not None
    return _download(spec.repo, spec.revision, spec.endpoint, token, log)


def _scratch(spec: BaseModelSpec, work_dir: Path, seed: int, texts: Callable[[], Iterable[str]],
             log: Callable[[str], None]) -> ResolvedModel:
    from kubetune_trainer.training.scratch import build_scratch_model

    assert spec.scratch is not None
    folder = work_dir / SCRATCH_FOLDER
    # A restarted run must continue on the very same random weights: build once, keep on the volume.
    if not (folder / "config.json").exists():
        staging = work_dir / f"{SCRATCH_FOLDER}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        build_scratch_model(spec.scratch, texts(), staging, seed=seed)
        staging.rename(folder)
        log(f"scratch model: built a random Llama ({spec.scratch.num_layers} layers, hidden "
            f"{spec.scratch.hidden_size}) with a tokenizer trained on the data, in {folder}")
    return ResolvedModel(folder=folder, name="scratch", revision=None, scratch=True)


def _local_path(path: str, mounts: Mounts) -> Path:
    try:
        pvc = parse_pvc_path(path, field="baseModel.path")
        folder = Path(mounts.path_of_pvc(pvc.claim_name, pvc.path)) if pvc is not None else Path(path)
    except VolumePathError as error:
        raise TrainerFailure(FailureReason.INVALID_CONFIG, str(error)) from None
    except KeyError as error:
        raise TrainerFailure(FailureReason.INVALID_CONFIG, f"baseModel.path {path}: {error.args[0]}") from None
    if pvc is None and not folder.is_absolute():
        raise TrainerFailure(FailureReason.INVALID_CONFIG,
                             f"baseModel.path {path!r}: use pvc:CLAIM/PATH or an absolute path")
    if not (folder / "config.json").is_file():
        raise TrainerFailure(FailureReason.MODEL_NOT_FOUND,
                             f"baseModel.path {path}: no model (config.json) in {folder}")
    return folder


def _download(repo: str, revision: str, endpoint: str | None, token: str | None,
              log: Callable[[str], None]) -> ResolvedModel:
    from huggingface_hub import HfApi, snapshot_download

    try:
        info = HfApi(endpoint=endpoint, token=token).model_info(repo, revision=revision)
        names = [s.rfilename for s in info.siblings or []]
        skip = list(_SKIP_ALWAYS)
        if any(n.endswith(".safetensors") for n in names):
            skip.append("*.bin")
        folder = snapshot_download(repo, revision=info.sha, token=token, endpoint=endpoint, ignore_patterns=skip)
    except Exception as error:
        raise _hub_failure(error, repo, revision, token) from None
    log(f"base model: {repo}@{info.sha}")
    return ResolvedModel(folder=Path(folder), name=repo, revision=info.sha, scratch=False)


def _hub_failure(error: Exception, repo: str, revision: str, token: str | None) -> TrainerFailure:
    """Map what the Hub client raised (possibly wrapped: a failed file download is re-raised as
    LocalEntryNotFoundError from the HTTP error) to a reason: auth, not found, or unreachable."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    from kubetune_trainer.huberrors import describe_error, error_chain, is_transport_error, status_code

    text = describe_error(error, [token])[:600]
    chain = error_chain(error)
    status = next((s for s in map(status_code, chain) if s is not None), None)
    if any(isinstance(e, GatedRepoError) for e in chain):
        return TrainerFailure(FailureReason.MODEL_GATED, f"{repo} is gated: accept its licence on the Hub with the "
                                                         f"account of the token in spec.hfTokenSecretRef ({text})")
    if status in (401, 403):
        # Without a token the Hub answers 401 for private and missing repos alike.
        why = ("no token was given and the Hub refused access: the repo is private, gated or missing; set "
               "spec.hfTokenSecretRef" if token is None else
               "the Hub refused the token: check the Secret in spec.hfTokenSecretRef and its access to the repo")
        return TrainerFailure(FailureReason.AUTH_FAILED, f"{repo}: {why} ({text})")
    if any(isinstance(e, RevisionNotFoundError) for e in chain):
        return TrainerFailure(FailureReason.MODEL_NOT_FOUND, f"{repo}: no revision {revision!r} ({text})")
    if any(isinstance(e, RepositoryNotFoundError) for e in chain):
        return TrainerFailure(FailureReason.MODEL_NOT_FOUND, f"{repo}: no such model repo ({text})")
    if status is not None and status < 500 and status not in (408, 429):
        return TrainerFailure(FailureReason.MODEL_NOT_FOUND, f"{repo}: {text}")
    if status is not None or any(is_transport_error(e) for e in chain):
        return TrainerFailure(FailureReason.UNREACHABLE, f"{repo}: the Hub could not be reached ({text})")
    if any(isinstance(e, OSError) and e.errno in _DISK_ERRNOS for e in chain):
        return TrainerFailure(FailureReason.TRAINING_FAILED, f"{repo}: cannot store the download ({text})",
                              retryable=False)
    return TrainerFailure(FailureReason.UNREACHABLE, f"{repo}: the download failed ({text})")


def load_tokenizer(folder: Path, log: Callable[[str], None] = print) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if not getattr(tokenizer, "is_fast", False):
        log("warning: the tokenizer has no fast (Rust) version: data preparation will be slow")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
        log("the tokenizer has no chat template: using ChatML")
    return tokenizer


def load_model(folder: Path, *, task: Task, method: MethodSpec, plan: DevicePlan, pad_token_id: int,
               labels: Sequence[str] = (), multi_label: bool = False, wrap: bool = True) -> Any:
    """The base model, wrapped in a LoRA adapter for LoRA/QLoRA, ready for the Trainer.

    wrap=False leaves the adapter to the caller (lora_config): trl's DPOTrainer adds it itself, so
    that switching the adapter off gives the reference model.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {}
    if method.type is not TuningMethod.FULL and plan.precision.value != "fp32":
        # The frozen base can live in the compute dtype; Full keeps fp32 master weights (autocast).
        kwargs["dtype"] = torch.bfloat16 if plan.bf16 else torch.float16
    if method.type is TuningMethod.QLORA:
        kwargs["quantization_config"] = _bnb_config(method, plan)
        # Each rank's copy on its own GPU (torchrun: LOCAL_RANK; one process: GPU 0).
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    if task is Task.TEXT_CLASSIFICATION:
        model = AutoModelForSequenceClassification.from_pretrained(
            folder, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            problem_type="multi_label_classification" if multi_label else "single_label_classification",
            **kwargs,
        )
        model.config.pad_token_id = pad_token_id
    else:
        model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    if method.type is TuningMethod.FULL:
        return model
    if method.type is TuningMethod.QLORA:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    if not wrap:
        return model
    from peft import get_peft_model

    return get_peft_model(model, lora_config(model, task, method))


def classification_head(model: Any) -> str:
    """Name of the classification head module (score for Llama-likes, classifier for BERT-likes)."""
    for name in ("score", "classifier", "classification_head"):
        if hasattr(model, name):
            return name
    raise TrainerFailure(FailureReason.INVALID_CONFIG,
                         f"cannot find the classification head of {type(model).__name__}")


def lora_config(model: Any, task: Task, method: MethodSpec) -> Any:
    """peft's LoraConfig for the spec's adapter shape on this model."""
    from peft import LoraConfig, TaskType

    lora = method.lora
    targets: str | list[str] = "all-linear" if lora.target_modules == ["all-linear"] else list(lora.target_modules)
    extra: dict[str, Any] = {}
    if task is Task.TEXT_CLASSIFICATION:
        head = classification_head(model)
        # The new head is trained in full and saved with the adapter (it is not in the base).
        extra["modules_to_save"] = [head]
        if targets == "all-linear":
            targets = _linear_names(model, exclude=head)
    return LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
        task_type=TaskType.SEQ_CLS if task is Task.TEXT_CLASSIFICATION else TaskType.CAUSAL_LM, **extra,
    )


def _linear_names(model: Any, exclude: str) -> list[str]:
    import torch

    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if isinstance(module, torch.nn.Linear) and not name.startswith(exclude)}
    return sorted(names - {exclude})


def _bnb_config(method: MethodSpec, plan: DevicePlan) -> Any:
    import torch
    from transformers import BitsAndBytesConfig

    assert method.quantization is not None
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=method.quantization.quant_type.value,
        bnb_4bit_use_double_quant=method.quantization.double_quant,
        bnb_4bit_compute_dtype=torch.bfloat16 if plan.bf16 else torch.float16,
    )
