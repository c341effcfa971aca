"""What an objective declares: the registry's record of it, and the built objective's interface with
the defaults of its optional hooks; plus the preference-pair data path objectives share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from hone.data.batching import Batching
from hone.data.pairs import collate_pairs, pair_batches, pair_length, prepare_pairs
from hone.methods.base import accept_any_run


@dataclass(frozen=True)
class ObjectiveKind:
    """An objective as the registry knows it before a run: `Config`, `build(config) -> Objective`, and
    an optional hook, `check_run(run)`, that rejects settings of the rest of the run (raise ValueError
    naming the key). A head the objective trains is loaded back by what hone.json names."""

    name: str
    Config: type
    build: Callable
    formats: tuple[str, ...]  # the record formats it trains on (`hone data check --objective` checks them)
    check_run: Callable[..., None] = accept_any_run


class Objective:
    """A built objective: the data it takes, how it batches, and the loss (see `hone.objectives`).

    Subclasses implement `prepare`, `length`, `collate`, `validation_batches`, `units`, `loss` and
    `report`; the optional hooks below default to an objective that trains nothing beside the
    method's parameters, adds nothing to the artifact and needs no look at the start model.
    """

    name: str
    # Whether `loss` samples from the model it trains (generation is then part of each step's time, which
    # varies with how long the samples are).
    samples: bool = False

    def prepare(self, data_config, tokenizer, seed: int):
        raise NotImplementedError

    def length(self, unit) -> int:
        raise NotImplementedError

    def collate(self, units: list, batching: Batching) -> dict:
        raise NotImplementedError

    def validation_batches(self, units: list, batching: Batching) -> list[dict]:
        raise NotImplementedError

    def units(self, batch) -> int:
        raise NotImplementedError

    def loss(self, model, batch) -> tuple:
        raise NotImplementedError

    def report(self, parts: list[dict], loss: float, *, validation: bool) -> dict:
        raise NotImplementedError

    def begin(self, model, data, batching: Batching, method) -> None:
        """Runs once with the start model on its device, before a checkpoint is restored or any step
        taken; `method` is the run's `hone.methods.base.Method`."""

    def accumulate(self, micro_batches: int) -> None:
        """Told before training how many micro-batches make one optimizer step (`train.grad_accum`);
        `loss` is then called that many times per step, in the same order each step."""

    def attach(self, model, data):
        return model

    def save(self, model, directory) -> None:
        pass

    def manifest(self, data) -> dict:
        return {}


class PairUnits:
    """An objective whose units are preference pairs (both replies packed as segments of one row)."""

    name: str

    def prepare(self, data_config, tokenizer, seed: int):
        return prepare_pairs(data_config, tokenizer, seed=seed, objective=self.name)

    def length(self, unit) -> int:
        return pair_length(unit)

    def collate(self, units, batching: Batching) -> dict:
        return collate_pairs(units, batching)

    def validation_batches(self, units, batching: Batching) -> list[dict]:
        return pair_batches(units, batching)

    def units(self, batch) -> int:
        return int(batch["n_pairs"])
