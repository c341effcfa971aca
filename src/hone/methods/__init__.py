"""Tuning methods: which parameters train. Each is a module with `Config`, `apply`, `save`, `load`.

`apply(model, config)` returns the model with exactly the intended parameters trainable;
`save(model, directory)` writes the method's artifact; `load(base, directory)` restores it.
Optional: `merge(model)` returns a plain transformers model with the method folded in (for
`hone export --merge`), `MERGE_PRECISION` says how; `check_run(run_config)` rejects settings of the
rest of the run that the method cannot work with (raise ValueError naming the key); `describe(model)`
returns a line the training log prints after `apply`.
"""

from __future__ import annotations

from contextlib import contextmanager
from types import ModuleType
from typing import Protocol

from hone.methods import adapters, full, ia3, layers, lora, prefix_tuning, prompt_tuning, qlora


class Method(Protocol):
    Config: type

    def apply(self, model, config): ...

    def save(self, model, directory) -> None: ...

    def load(self, base, directory): ...


METHODS: dict[str, ModuleType] = {
    "lora": lora, "qlora": qlora, "full": full, "layers": layers, "adapters": adapters,
    "prompt_tuning": prompt_tuning, "prefix_tuning": prefix_tuning, "ia3": ia3,
}
METHOD_CONFIGS = {name: module.Config for name, module in METHODS.items()}


def method_for(name: str) -> Method:
    return METHODS[name]  # names are validated by RunConfig before this is reached


def has_adapter(name: str) -> bool:
    """Whether the method wraps the base in a PEFT adapter that `reference_policy` can switch off."""
    return name not in ("full", "layers", "adapters")


def can_merge(name: str) -> bool:
    return hasattr(METHODS[name], "merge")


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
