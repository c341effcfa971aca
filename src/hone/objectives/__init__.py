"""Training objectives: the loss. Each is a module with `Config` and `build(config) -> Objective`.

An objective's `loss(model, batch)` returns the batch's *summed* loss and its metrics; the loop
divides by `units(batch)` summed over every micro-batch of the optimizer step, so gradient
accumulation gives the same gradient as one big batch.
"""

from __future__ import annotations

from types import ModuleType
from typing import Protocol

from hone.objectives import sft


class Objective(Protocol):
    def units(self, batch) -> int: ...

    def loss(self, model, batch) -> tuple: ...


OBJECTIVES: dict[str, ModuleType] = {"sft": sft}
OBJECTIVE_CONFIGS = {name: module.Config for name, module in OBJECTIVES.items()}


def build_objective(config) -> Objective:
    return OBJECTIVES[config.type].build(config)
