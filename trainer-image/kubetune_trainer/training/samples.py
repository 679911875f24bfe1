"""Sample generations: a few validation prompts answered by the base model and by the tuned one.

A loss going down does not say whether the answers got better; three answers side by side do.
Decoding is greedy with a bounded length, so the same run gives the same text. The base answers
are generated before training and kept in the work folder (a resumed run shows the same ones).
Full texts go to the model card and <work_dir>/samples.json; the TrainerResult carries them
truncated (the termination message holds 4096 bytes).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kubetune.api.redact import redact
from kubetune.api.tuningjobstatus import SampleGeneration
from kubetune_trainer.data.rows import ChatExample, Example, Message, PreferenceExample, TextExample

SAMPLE_COUNT = 3
MAX_NEW_TOKENS = 64
RESULT_CHARS = 160  # per text in the TrainerResult
BASE_ANSWERS_FILE = "base-samples.json"
SAMPLES_FILE = "samples.json"


@dataclass(frozen=True)
class SamplePrompt:
    messages: tuple[Message, ...] | None  # a chat prompt (ends with a user turn), or
    text: str | None  # the start of a plain text, to be continued
    reference: str | None  # what the data says comes next

    @property
    def shown(self) -> str:
        """The prompt as a reader sees it: the last user turn, or the text."""
        if self.messages:
            return self.messages[-1].content
        return self.text or ""


@dataclass(frozen=True)
class Sample:
    prompt: str
    reference: str | None
    base: str
    tuned: str


def sample_prompts(examples: Sequence[Example], count: int = SAMPLE_COUNT) -> list[SamplePrompt]:
    """The first `count` validation rows as prompts (classification rows have none)."""
    prompts: list[SamplePrompt] = []
    for example in examples:
        if len(prompts) >= count:
            break
        if isinstance(example, ChatExample):
            prompts.append(SamplePrompt(example.messages[:-1], None, example.messages[-1].content))
        elif isinstance(example, PreferenceExample):
            prompts.append(SamplePrompt(example.prompt, None, example.chosen))
        elif isinstance(example, TextExample):
            words = example.text.split(" ")
            half = max(1, len(words) // 2)
            prompts.append(SamplePrompt(None, " ".join(words[:half]), " ".join(words[half:]) or None))
    return prompts


def generate_answers(model: Any, tokenizer: Any, prompts: Sequence[SamplePrompt],
                     max_new_tokens: int = MAX_NEW_TOKENS) -> list[str]:
    """Greedy answers, one prompt at a time (no padding to get wrong)."""
    import torch

    if not prompts:
        return []
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    answers = []
    try:
        with torch.no_grad():
            for prompt in prompts:
                ids = _prompt_ids(tokenizer, prompt)
                input_ids = torch.tensor([ids], device=device)
                output = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                        max_new_tokens=max_new_tokens, do_sample=False,
                                        pad_token_id=tokenizer.pad_token_id)
                answers.append(tokenizer.decode(output[0, len(ids):], skip_special_tokens=True).strip())
    finally:
        model.train(was_training)
    return answers


def _prompt_ids(tokenizer: Any, prompt: SamplePrompt) -> list[int]:
    if prompt.messages:
        turns = [{"role": m.role, "content": m.content} for m in prompt.messages]
        text = tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return list(tokenizer((tokenizer.bos_token or "") + (prompt.text or ""), add_special_tokens=False)["input_ids"])


def base_answers(path: Path, prompts: Sequence[SamplePrompt], generate: Callable[[], list[str]]) -> list[str]:
    """The base model's answers: generated once, then read back from `path` on a resumed run."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(saved, list) and len(saved) == len(prompts) and all(isinstance(s, str) for s in saved):
            return saved
    except (OSError, ValueError):
        pass
    answers = generate()
    path.write_text(json.dumps(answers, ensure_ascii=False), encoding="utf-8")
    return answers


def build_samples(prompts: Sequence[SamplePrompt], base: Sequence[str], tuned: Sequence[str],
                  secrets: Sequence[str | None]) -> list[Sample]:
    """Side by side, secrets redacted (the data may hold one, and a model may repeat it)."""
    def clean(text: str | None) -> str | None:
        return None if text is None else redact(text, list(secrets))

    return [Sample(prompt=clean(p.shown) or "", reference=clean(p.reference), base=clean(b) or "",
                   tuned=clean(t) or "")
            for p, b, t in zip(prompts, base, tuned, strict=True)]


def write_samples(path: Path, samples: Sequence[Sample]) -> None:
    path.write_text(json.dumps([asdict(s) for s in samples], ensure_ascii=False, indent=1), encoding="utf-8")


def for_result(samples: Sequence[Sample], limit: int = RESULT_CHARS) -> list[SampleGeneration]:
    def clip(text: str) -> str:
        flat = " ".join(text.split())
        return flat if len(flat) <= limit else flat[: limit - 1] + "…"

    return [SampleGeneration(prompt=clip(s.prompt), reference=clip(s.reference) if s.reference else None,
                             base=clip(s.base), tuned=clip(s.tuned)) for s in samples]
