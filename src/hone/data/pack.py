"""Batch planning, packing into rows, collation with block-causal masks, and the validation split.

Packed rows never leak between examples: targets are shifted inside each example (its last token
predicts nothing), positions restart at 0 per example, and the 4D attention mask only lets a token
see earlier tokens of its own example (or, with `mask=False`, the `segments` bounds drive hone's
segment attention). So a packed row gives the same loss as its examples one by one.
"""

from __future__ import annotations

import hashlib
import random
from typing import Sequence

from hone.data.formats import Example, example_key
from hone.data.template import IGNORE, TokenizedExample
from hone.data.vision import pixel_inputs
from hone.errors import HoneError
from hone.models.attention import segment_bounds


def plan_batches(
    lengths: Sequence[int],
    *,
    batch_size: int | None = None,
    batch_tokens: int | None = None,
    seed: int,
    epoch: int,
) -> list[list[int]]:
    """Example indices shuffled by (seed, epoch) and grouped into micro-batches.

    With `batch_size`, every batch holds that many examples (the last may hold fewer). With
    `batch_tokens`, batches are filled greedily in shuffled order while their summed lengths stay
    within the budget; an example longer than the budget gets a batch of its own.
    """
    if (batch_size is None) == (batch_tokens is None):
        raise HoneError("give exactly one of batch_size and batch_tokens", where="plan_batches")
    order = list(range(len(lengths)))
    random.Random(f"hone-batches:{seed}:{epoch}").shuffle(order)
    if batch_size is not None:
        if batch_size < 1:
            raise HoneError(f"batch_size is {batch_size}; must be >= 1", where="plan_batches")
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if batch_tokens < 1:
        raise HoneError(f"batch_tokens is {batch_tokens}; must be >= 1", where="plan_batches")
    batches: list[list[int]] = []
    current: list[int] = []
    used = 0
    for index in order:
        if current and used + lengths[index] > batch_tokens:
            batches.append(current)
            current, used = [], 0
        current.append(index)
        used += lengths[index]
    if current:
        batches.append(current)
    return batches


def pack_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """First-fit-decreasing bin packing of indices into rows holding at most `capacity` tokens each."""
    too_long = [i for i, length in enumerate(lengths) if length > capacity]
    if too_long:
        raise HoneError(
            f"example {too_long[0]} has {lengths[too_long[0]]} tokens, more than the row capacity of {capacity}",
            where="pack_rows",
            hint="truncate examples to max_length <= the packing capacity",
        )
    rows: list[list[int]] = []
    room: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        row = next((r for r, free in enumerate(room) if free >= lengths[index]), None)
        if row is None:
            rows.append([])
            room.append(capacity)
            row = len(rows) - 1
        rows[row].append(index)
        room[row] -= lengths[index]
    return rows


def collate(examples: list[TokenizedExample], rows: list[list[int]] | None, pad_id: int, *,
            mask: bool = True) -> dict:
    """Tensors for one micro-batch; `rows` lists the examples packed into each row (None: one per row).

    Returns input_ids, targets (already shifted, -100 at each example's last token and at padding),
    position_ids (restarting per example), segment_ids (1.. per example, 0 = padding), segments (per
    row, the (start, end) of each example and of the padding, for segment attention), attention_mask
    (R, 1, L, L) bool with True = attend (None when `mask` is False), and the scalars n_tokens and
    n_targets.
    """
    import torch

    if rows is None:
        rows = [[i] for i in range(len(examples))]
    if any(examples[i].processor for row in rows for i in row) and any(len(row) > 1 for row in rows):
        raise HoneError("a vision-language model's batch packs examples into shared rows", where="collate",
                        hint="lay rows out with `images_alone` first")
    width = max((sum(len(examples[i].input_ids) for i in row) for row in rows), default=0)
    shape = (len(rows), width)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    targets = torch.full(shape, IGNORE, dtype=torch.long)
    position_ids = torch.zeros(shape, dtype=torch.long)
    segment_ids = torch.zeros(shape, dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for segment, index in enumerate(row, start=1):
            example = examples[index]
            n = len(example.input_ids)
            if n == 0:
                continue
            input_ids[r, at : at + n] = torch.tensor(example.input_ids, dtype=torch.long)
            # The token at t predicts the label of t+1 in the same example; the last predicts nothing.
            targets[r, at : at + n - 1] = torch.tensor(example.labels[1:], dtype=torch.long)
            position_ids[r, at : at + n] = torch.arange(n)
            segment_ids[r, at : at + n] = segment
            at += n
    batch = {
        "input_ids": input_ids,
        "targets": targets,
        "position_ids": position_ids,
        "segment_ids": segment_ids,
        "segments": segment_bounds(segment_ids),
        "attention_mask": block_causal_mask(segment_ids) if mask else None,
        "n_tokens": (segment_ids > 0).sum(),
        "n_targets": (targets != IGNORE).sum(),
    }
    if any(examples[i].processor for row in rows for i in row):
        batch["model_inputs"] = image_model_inputs(examples, rows, segment_ids)
    return batch


def images_alone(examples: Sequence[TokenizedExample], rows: list[list[int]]) -> list[list[int]]:
    """`rows` as they are, or one example per row for a vision-language model: packing never lets one
    example's image tokens meet another example's text, and such a model's forward attends over a
    whole row (a padding mask, positions of its own), so its text-only examples get rows of their own too."""
    if not any(examples[i].processor for row in rows for i in row):
        return rows
    return [[i] for row in rows for i in row]


def image_model_inputs(examples, rows, segment_ids) -> dict:
    """What a vision-language model's forward takes beside the ids of a batch of one example per row:
    the padding mask, the pixel inputs of each row's images (laid out by the model's image processor)
    and per-token inputs such as token type ids, padded with 0 (0 throughout a text-only row)."""
    import torch

    first = next(examples[row[0]] for row in rows if row and examples[row[0]].processor)
    inputs = pixel_inputs(first.processor, [examples[row[0]].images if row else [] for row in rows])
    inputs["attention_mask"] = (segment_ids > 0).long()
    keys = {key for row in rows if row for key in examples[row[0]].token_inputs}
    for key in sorted(keys):
        values = torch.zeros(segment_ids.shape, dtype=torch.long)
        for r, row in enumerate(rows):
            given = examples[row[0]].token_inputs.get(key, []) if row else []
            values[r, :len(given)] = torch.tensor(given, dtype=torch.long)
        inputs[key] = values
    return inputs


def block_causal_mask(segment_ids):
    """(R, L) segment ids -> (R, 1, L, L) bool mask: attend to earlier-or-same positions of the same segment.

    Padding (segment 0) attends only to itself, so no softmax row is empty (an all-False row gives NaN).
    """
    import torch

    length = segment_ids.shape[-1]
    causal = torch.ones(length, length, dtype=torch.bool, device=segment_ids.device).tril()
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    real = (segment_ids > 0)[:, :, None]
    itself = torch.eye(length, dtype=torch.bool, device=segment_ids.device)
    return ((same & causal & real) | itself)[:, None, :, :]


def split_validation(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Split examples into (train, validation) by a hash of their content and the seed.

    Each example's side depends only on its own content, so appending lines to a file never moves
    existing examples, and duplicates always land on the same side. When the hash picks no
    validation example (fraction > 0, at least 2 examples) the lowest-scoring one is taken; when it
    picks all of them the highest-scoring one goes back to training.
    """
    if not 0 <= fraction < 1:
        raise HoneError(f"validation fraction is {fraction}; expected 0 <= fraction < 1", where="split_validation")
    scores = [split_score(example, seed) for example in examples]
    chosen = {i for i, score in enumerate(scores) if score < fraction}
    if fraction > 0 and len(examples) >= 2:
        if not chosen:
            lowest = min(scores)
            chosen = {i for i, score in enumerate(scores) if score == lowest}
        elif len(chosen) == len(examples):
            chosen.discard(max(range(len(scores)), key=scores.__getitem__))
    train = [e for i, e in enumerate(examples) if i not in chosen]
    validation = [e for i, e in enumerate(examples) if i in chosen]
    return train, validation


def split_score(example: Example, seed: int) -> float:
    """A uniform number in [0, 1) fixed by the example's content and the seed."""
    digest = hashlib.sha256(f"{seed}:{example_key(example)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
