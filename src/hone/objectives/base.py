"""Pieces objectives share: the optional hooks' defaults, the preference-pair data path, and the
check that a reference policy exists."""

from __future__ import annotations

from hone.data.pairs import collate_pairs, pair_batches, pair_length, prepare_pairs
from hone.errors import ConfigError


class NoExtras:
    """An objective that trains nothing beside the method's parameters and adds nothing to the artifact."""

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

    def collate(self, units, data_config, pad_id: int, segmented: bool) -> dict:
        return collate_pairs(units, data_config, pad_id, segmented)

    def validation_batches(self, units, data_config, pad_id: int, segmented: bool) -> list[dict]:
        return pair_batches(units, data_config, pad_id, segmented)


def require_adapter(model, objective: str) -> None:
    """Objectives with a reference policy use the base with the adapter disabled: no second copy."""
    if not hasattr(model, "disable_adapter"):
        raise ConfigError(f"{objective} needs an adapter method: its reference model is the base with the adapter "
                          "disabled", where="method.type", hint="use method: lora")
