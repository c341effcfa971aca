"""Pieces objectives share: the optional hooks' defaults and the preference-pair data path."""

from __future__ import annotations

from hone.data.pairs import collate_pairs, pair_batches, pair_length, prepare_pairs


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

    def units(self, batch) -> int:
        return int(batch["n_pairs"])
