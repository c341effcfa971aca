"""How a run's units become rows of a batch: one frozen value every collate function takes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Batching:
    """What collating needs to know about the run and the model.

    `packing`: several examples may share a row (`data.packing`), each row at most `max_length` tokens
    unless `segmented`; `segmented`: the model attends within segments of a row (segment attention,
    `hone.models.attention`), so packed rows need no mask and no length cap; `pad_id` fills the rest.
    """

    pad_id: int
    max_length: int | None = None
    packing: bool = False
    segmented: bool = False

    @classmethod
    def for_run(cls, data_config, pad_id: int, segmented: bool) -> "Batching":
        """The batching of a run's data settings on a model with (or without) segment attention."""
        return cls(pad_id, data_config.max_length, data_config.packing, segmented)
