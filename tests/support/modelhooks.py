"""Test-side faults in the trainer's model: forward hooks on every model its loader returns.

Used in one process by tests/test_trainer_guardrails.py (a fixture) and in the processes
torchrun starts by tests/support/rankfaults/sitecustomize.py. The hooks raise the real
exception classes (torch.cuda.OutOfMemoryError) or change the real loss, so the trainer's own
handlers are what is tested.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PreHook = Callable[[Any, Any, dict[str, Any]], None]  # (module, args, kwargs)
PostHook = Callable[[Any, Any, dict[str, Any], Any], Any]  # (module, args, kwargs, output) -> output


def hooked_model_loader(load_model: Callable[..., Any], before: PreHook, after: PostHook) -> Callable[..., Any]:
    """`load_model` whose models run `before` ahead of each forward call and `after` on its output."""

    def load_model_with_hooks(*args: Any, **kwargs: Any) -> Any:
        model = load_model(*args, **kwargs)
        model.register_forward_pre_hook(before, with_kwargs=True)
        model.register_forward_hook(after, with_kwargs=True)
        return model

    return load_model_with_hooks
