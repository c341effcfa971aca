"""Collation shared by objectives: whole sequences whose last tokens a head reads, and moving batches."""

from __future__ import annotations

import torch

from hone.data.batching import Batching
from hone.data.pack import collate, images_alone, pack_rows


def collate_sequences(examples, groups: list[list[int]], batching: Batching) -> dict:
    """Collate whole sequences whose last tokens a head reads; `groups` are indices that must share a
    row when packing (a preference pair: both replies in one row, so one forward pass scores both).

    With packing and segment attention everything is one row; with packing alone, groups are packed
    into rows of at most `max_length` tokens per sequence in the group; without packing, one padded
    row per sequence. Adds `last` (N, 2): the (row, position) of each sequence's last token.
    """
    if batching.packing and batching.segmented:
        rows = [[i for group in groups for i in group]]
    elif batching.packing:
        sizes = [sum(len(examples[i].input_ids) for i in group) for group in groups]
        capacity = max(batching.max_length * max(len(g) for g in groups), max(sizes))
        rows = [[i for g in row for i in groups[g]] for row in pack_rows(sizes, capacity)]
    else:
        rows = [[i] for group in groups for i in group]
    rows = images_alone(examples, rows)
    batch = collate(examples, rows, batching.pad_id, mask=not batching.segmented)
    last = [None] * len(examples)
    for r, row in enumerate(rows):
        at = 0
        for index in row:
            at += len(examples[index].input_ids)
            last[index] = (r, at - 1)
    batch["last"] = torch.tensor(last, dtype=torch.long).reshape(-1, 2)
    batch["sequence"] = _sequence_ids(examples, rows, batch["input_ids"].shape)
    return batch


def _sequence_ids(examples, rows, shape) -> torch.Tensor:
    """(R, L): the index (into `examples`) of the sequence each position belongs to, -1 for padding."""
    ids = torch.full(shape, -1, dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for index in row:
            n = len(examples[index].input_ids)
            ids[r, at:at + n] = index
            at += n
    return ids


def to_device(batch: dict, device) -> dict:
    """Move a collated batch's tensors to `device` (0-d counts stay where they are), the model inputs
    of a vision batch included."""
    return {k: to_device(v, device) if isinstance(v, dict)
            else v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) and v.dim() else v
            for k, v in batch.items()}
