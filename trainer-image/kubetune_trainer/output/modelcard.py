"""The README.md (model card) pushed with every model: Hub metadata plus what a reader needs.

Pure text rendering, no Hub access: the YAML front matter follows the Hub's model card
metadata (base_model, datasets, library_name, pipeline_tag, tags, license), the body says
what the model is, how it was trained, how it scored against its base model and how to
load it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

# Hub repo ids ("org/name" or a legacy "name"); local paths and free text stay out of metadata.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_METRIC_NAMES = {
    "train_loss": "Train loss",
    "trained_tokens": "Trained tokens",
    "runtime_seconds": "Training runtime (s)",
}


@dataclass(frozen=True)
class CardSample:
    """A validation prompt with the base and the tuned model's answers, in full."""

    prompt: str
    reference: str | None
    base: str
    tuned: str


@dataclass(frozen=True)
class ModelCardInfo:
    base_model: str
    base_model_revision: str | None
    datasets: list[str]
    method: str  # "LoRA" | "QLoRA" | "Full"
    task: str  # "textGeneration" | "textClassification" (the API's spellings; hyphenated ones work too)
    hyperparameters: dict[str, object]
    # Recognised keys: eval_loss, base_eval_loss, accuracy, base_accuracy, train_loss,
    # trained_tokens, runtime_seconds; others are listed as they are.
    metrics: dict[str, float | int | None]
    repo: str | None
    adapter: bool  # True: the repo holds a PEFT adapter; False: full weights (Full or merged)
    labels: list[str] | None
    license: str | None = None
    # Where the base comes from: "hub" (base_model is a repo id), "path" (a folder, possibly
    # pvc:CLAIM/PATH) or "scratch" (base_model describes a random model).
    base_kind: str = "hub"
    base_subfolder: str | None = None  # the base ships in this folder of the repo (a scratch base)
    subfolder: str | None = None  # this card's model lives in this folder of the repo (merged/)
    merged_subfolder: str | None = None  # a merged model is in this folder of the repo
    endpoint: str | None = None  # a self-hosted Hub holds the repo; None: the public Hub
    samples: list[CardSample] | None = None  # base vs tuned answers to a few validation prompts


def is_classification(task: str) -> bool:
    return task.replace("-", "").replace("_", "").lower() == "textclassification"


def render_model_card(info: ModelCardInfo) -> str:
    """README.md text: YAML front matter, then the sections."""
    sections = [
        _front_matter(info),
        _about(info),
        _training(info),
        _results(info),
        _samples(info),
        _usage(info),
    ]
    return "\n".join(s for s in sections if s).rstrip() + "\n"


def card_metadata(info: ModelCardInfo) -> dict[str, object]:
    """The front matter as a dict (the Hub's model card metadata keys)."""
    method = info.method.lower()
    tags = ["kubetune", method if method in ("lora", "qlora") else "full-fine-tune"]
    if info.adapter:
        tags.append("peft")
    data: dict[str, object] = {}
    if info.base_kind == "hub" and _HUB_ID.match(info.base_model):
        data["base_model"] = info.base_model
    hub_datasets = [d for d in info.datasets if _HUB_ID.match(d)]
    if hub_datasets:
        data["datasets"] = hub_datasets
    data["library_name"] = "peft" if info.adapter else "transformers"
    data["pipeline_tag"] = "text-classification" if is_classification(info.task) else "text-generation"
    data["tags"] = tags
    if info.license:
        data["license"] = info.license
    return data


def _front_matter(info: ModelCardInfo) -> str:
    body = yaml.safe_dump(card_metadata(info), sort_keys=False, allow_unicode=True)
    return f"---\n{body}---\n"


def _about(info: ModelCardInfo) -> str:
    name = info.repo or "This model"
    kind = "a PEFT adapter" if info.adapter else "a fine-tuned model (full weights)"
    task = "text classification" if is_classification(info.task) else "text generation"
    revision = f" (revision `{info.base_model_revision}`)" if info.base_model_revision else ""
    base = info.base_model if info.base_kind == "scratch" else f"`{info.base_model}`"
    if info.base_subfolder:
        base += f", which ships in `{info.base_subfolder}/` of this repo,"
    lines = [
        f"# {name}",
        "",
        f"{name} is {kind} for {task}, fine-tuned from {base}{revision} with "
        f"{info.method} by [kubetune](https://github.com/kubetune/kubetune).",
    ]
    if info.datasets:
        lines += ["", "Training data: " + ", ".join(f"`{d}`" for d in info.datasets) + "."]
    if info.labels:
        lines += ["", "Labels: " + ", ".join(f"`{label}`" for label in info.labels) + "."]
    return "\n".join(lines) + "\n"


def _training(info: ModelCardInfo) -> str:
    lines = ["## Training", "", f"Method: {info.method}.", ""]
    if info.hyperparameters:
        lines += ["| Hyperparameter | Value |", "| --- | --- |"]
        lines += [f"| {key} | {_cell(value)} |" for key, value in info.hyperparameters.items()]
    else:
        lines.append("Default hyperparameters.")
    return "\n".join(lines) + "\n"


def _results(info: ModelCardInfo) -> str:
    metrics = dict(info.metrics)
    lines = ["## Results", "", "| Metric | Base model | Fine-tuned |", "| --- | --- | --- |"]
    loss_name = "Eval loss (DPO)" if "preference_accuracy" in metrics else "Eval loss"
    lines.append(
        f"| {loss_name} | {_cell(metrics.pop('base_eval_loss', None))} | {_cell(metrics.pop('eval_loss', None))} |"
    )
    if is_classification(info.task) or "accuracy" in metrics:
        lines.append(
            f"| Accuracy | {_cell(metrics.pop('base_accuracy', None))} | {_cell(metrics.pop('accuracy', None))} |"
        )
    if "preference_accuracy" in metrics:
        # Share of validation pairs where the model finds the chosen answer more likely than the rejected.
        lines.append(f"| Preference accuracy | {_cell(metrics.pop('base_preference_accuracy', None))} | "
                     f"{_cell(metrics.pop('preference_accuracy', None))} |")
        # The base is the reference: its implicit rewards are 0 by definition.
        lines.append(f"| Reward margin (DPO) | 0 | {_cell(metrics.pop('reward_margin', None))} |")
        lines.append(f"| Reward accuracy (DPO) | 0 | {_cell(metrics.pop('reward_accuracy', None))} |")
    lines += ["", "| Training figure | Value |", "| --- | --- |"]
    for key, title in _METRIC_NAMES.items():
        lines.append(f"| {title} | {_cell(metrics.pop(key, None))} |")
    lines += [f"| {key} | {_cell(value)} |" for key, value in metrics.items()]
    return "\n".join(lines) + "\n"


def _samples(info: ModelCardInfo) -> str:
    """Base and tuned answers to the same prompts (greedy decoding): did the tuning help, in words."""
    if not info.samples:
        return ""
    lines = ["## Sample generations", "",
             "Validation prompts answered by the base model and by the fine-tuned one (greedy decoding, "
             "answers cut at 64 tokens).", ""]
    for number, sample in enumerate(info.samples, start=1):
        lines += [f"### Sample {number}", "", "Prompt:", "", _quoted(sample.prompt), ""]
        if sample.reference:
            lines += ["Answer in the data:", "", _quoted(sample.reference), ""]
        lines += ["Base model:", "", _quoted(sample.base), "", "Fine-tuned:", "", _quoted(sample.tuned), ""]
    return "\n".join(lines)


def _quoted(text: str) -> str:
    """A Markdown block quote that shows the text as it is (no markup from the model's output)."""
    if not text.strip():
        return "> *(nothing, or only spaces and newlines)*"
    escaped = re.sub(r"([\\`*_{}\[\]<>#|])", r"\\\1", text)
    return "\n".join(f"> {line}" if line.strip() else ">" for line in escaped.splitlines())


def _usage(info: ModelCardInfo) -> str:
    if is_classification(info.task):
        auto = "AutoModelForSequenceClassification"
        extra = f", num_labels={len(info.labels)}" if info.labels else ""
    else:
        auto, extra = "AutoModelForCausalLM", ""
    if info.adapter and info.base_subfolder:
        intro, code = _usage_with_base_inside(info, auto, extra)
    elif info.adapter:
        intro, code = _usage_with_base_elsewhere(info, auto, extra)
    elif info.subfolder and info.repo:
        intro = [f"The model is in `{info.subfolder}/` of the repo:", ""]
        code = _from_subfolder(info.repo, info.subfolder, auto, "model", tokenizer=True)
    else:
        repo = info.repo or "path/to/this/model"
        intro = []
        code = [
            f"from transformers import {auto}, AutoTokenizer",
            "",
            f'model = {auto}.from_pretrained("{repo}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{repo}")',
        ]
    if not is_classification(info.task):
        code += [
            "",
            'inputs = tokenizer("Hello", return_tensors="pt")',
            "print(tokenizer.decode(model.generate(**inputs, max_new_tokens=32)[0]))",
        ]
    if info.endpoint:
        # Without it, from_pretrained looks for the repo on the public Hub and finds nothing.
        intro = [f"This repo is on a self-hosted Hub, {info.endpoint}: set `HF_ENDPOINT={info.endpoint}` "
                 "(and `HF_TOKEN` for a private repo) before loading.", "", *intro]
    lines = ["## How to use", "", *intro, "```python", *code, "```"]
    if info.merged_subfolder and info.repo:
        lines += ["", f"A merged model (base and adapter in one, full weights) is in `{info.merged_subfolder}/`:",
                  "", "```python", *_from_subfolder(info.repo, info.merged_subfolder, auto, "merged"), "```"]
    return "\n".join(lines) + "\n"


def _usage_with_base_inside(info: ModelCardInfo, auto: str, extra: str) -> tuple[list[str], list[str]]:
    """The base is a folder of this repo: from_pretrained(repo, subfolder=...) would not find the adapter's
    base path, so load both from one local snapshot."""
    if info.repo:
        fetch = ["from huggingface_hub import snapshot_download"]
        local = [f'local = snapshot_download("{info.repo}")']
        where = "Download the repo, then load the base from its folder and the adapter from the root:"
    else:
        fetch, local = [], ['local = "path/to/this/model"']
        where = "Load the base from its folder, then the adapter from this folder:"
    code = [
        *fetch,
        "from peft import PeftModel",
        f"from transformers import {auto}, AutoTokenizer",
        "",
        *local,
        f'base = {auto}.from_pretrained(f"{{local}}/{info.base_subfolder}"{extra})',
        "model = PeftModel.from_pretrained(base, local)",
        "tokenizer = AutoTokenizer.from_pretrained(local)",
    ]
    return [where, ""], code


def _usage_with_base_elsewhere(info: ModelCardInfo, auto: str, extra: str) -> tuple[list[str], list[str]]:
    repo = info.repo or "path/to/this/model"
    intro: list[str] = []
    if info.base_kind == "hub" and _HUB_ID.match(info.base_model):
        revision = f', revision="{info.base_model_revision}"' if info.base_model_revision else ""
        base = f'"{info.base_model}"{revision}'
    elif info.base_model.startswith("/"):
        base = f'"{info.base_model}"'
        intro = [f"The base model is the folder `{info.base_model}` it was trained on:", ""]
    else:
        base = '"path/to/the/base/model"'
        intro = [f"The base model is not on a Hub: load it from where you keep `{info.base_model}`.", ""]
    code = [
        "from peft import PeftModel",
        f"from transformers import {auto}, AutoTokenizer",
        "",
        f"base = {auto}.from_pretrained({base}{extra})",
        f'model = PeftModel.from_pretrained(base, "{repo}")',
        # The adapter's folder has the tokenizer as trained (pad token, chat template).
        f'tokenizer = AutoTokenizer.from_pretrained("{repo}")',
    ]
    return intro, code


def _from_subfolder(repo: str, subfolder: str, auto: str, name: str, *, tokenizer: bool = False) -> list[str]:
    """Load from a folder of the repo through a snapshot: from_pretrained(repo, subfolder=...) finds the
    adapter_config.json at the repo root first and loads the adapter's base instead."""
    return [
        "from huggingface_hub import snapshot_download",
        f"from transformers import {auto}{', AutoTokenizer' if tokenizer else ''}",
        "",
        f'local = snapshot_download("{repo}", allow_patterns=["{subfolder}/*"])',
        f'{name} = {auto}.from_pretrained(f"{{local}}/{subfolder}")',
        *([f'tokenizer = AutoTokenizer.from_pretrained(f"{{local}}/{subfolder}")'] if tokenizer else []),
    ]


def _cell(value: object) -> str:
    """A table cell: numbers readable, missing values explicit, no pipes breaking the table."""
    if value is None:
        return "not measured"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")
