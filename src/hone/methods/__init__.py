"""Tuning methods: which parameters train. Each is a module with `Config`, `apply`, `save`, `load`.

`apply(model, config)` returns the model with exactly the intended parameters trainable;
`save(model, directory)` writes the method's artifact; `load(base, directory)` restores it.
"""

from __future__ import annotations

from types import ModuleType
from typing import Protocol

from hone.methods import lora


class Method(Protocol):
    Config: type

    def apply(self, model, config): ...

    def save(self, model, directory) -> None: ...

    def load(self, base, directory): ...


METHODS: dict[str, ModuleType] = {"lora": lora}
METHOD_CONFIGS = {name: module.Config for name, module in METHODS.items()}


def method_for(name: str) -> Method:
    return METHODS[name]  # names are validated by RunConfig before this is reached
