"""Tuning methods: which parameters train. Each is a module that declares `METHOD`, a
`hone.methods.base.Method`: its `Config`, `apply`, `save`, `load`, what it is (an adapter or not,
mergeable, servable side by side with other adapters) and its optional hooks, with their defaults.
"""

from __future__ import annotations

from contextlib import contextmanager

from hone.methods import adapters, full, ia3, layers, lora, prefix_tuning, prompt_tuning, qlora
from hone.methods.base import Method

METHODS: dict[str, Method] = {module.METHOD.name: module.METHOD for module in (
    lora, qlora, full, layers, adapters, prompt_tuning, prefix_tuning, ia3)}
METHOD_CONFIGS = {name: method.Config for name, method in METHODS.items()}


def method_for(name: str) -> Method:
    return METHODS[name]  # names are validated by RunConfig before this is reached


@contextmanager
def reference_policy(model):
    """Run `model` as the policy training started from: the frozen start adapter when the run continues
    a trained one (`method.init_from`), else the base with the adapter disabled (no copy of the weights)."""
    if lora.START_ADAPTER in getattr(model, "peft_config", {}):
        model.set_adapter(lora.START_ADAPTER, inference_mode=True)
        try:
            yield model
        finally:
            model.set_adapter("default")  # trainable again, the start adapter frozen
        return
    with model.disable_adapter():
        yield model
