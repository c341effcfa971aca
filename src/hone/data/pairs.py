"""Preference pairs for DPO and reward models: prompt + chosen and prompt + rejected, tokenized alike.

Both sides are rendered with the chat template as one conversation each (the prompt's tokens are
identical in both); the labels mark the reply (weight-1 assistant turns) whose log-probability DPO
compares. Truncation keeps the left end, so the prompt survives and the tail of a long reply goes.
"""

from __future__ import annotations

from dataclasses import dataclass

from hone.data.batching import Batching
from hone.data.collate import collate_sequences
from hone.data.formats import Example
from hone.data.prepare import PreparedData, note_vision_packing, read_split
from hone.data.template import IGNORE, TokenizedExample, tokenize_example
from hone.errors import DataError

PAIR_FORMATS = ("preference",)


@dataclass
class TokenizedPair:
    chosen: TokenizedExample
    rejected: TokenizedExample
    where: str
    reference: tuple[float, float] | None = None
    """The start model's summed log-probs of (chosen, rejected) reply, where DPO scores them before training."""


def tokenize_pair(example: Example, tokenizer, *, max_length: int | None) -> TokenizedPair:
    """The chosen and rejected conversations, each tokenized as an SFT example with loss on the reply."""
    sides = []
    for reply in (example.chosen, example.rejected):
        conversation = Example(format="chat", messages=[*example.messages, *reply], where=example.where)
        sides.append(tokenize_example(conversation, tokenizer, loss_on="assistant", max_length=max_length))
    return TokenizedPair(sides[0], sides[1], example.where)


def prepare_pairs(data_config, tokenizer, *, seed: int, objective: str) -> PreparedData:
    """Read preference files, split off validation pairs and tokenize; pairs whose reply was cut away
    entirely by `max_length` are dropped and counted."""
    notes: list[str] = []
    train, validation = read_split(data_config, seed=seed, formats=PAIR_FORMATS, objective=objective, notes=notes)

    def tokenize(examples):
        pairs = [tokenize_pair(e, tokenizer, max_length=data_config.max_length) for e in examples]
        truncated = sum(p.chosen.truncated or p.rejected.truncated for p in pairs)
        if truncated:
            notes.append(f"{truncated} pairs truncated to data.max_length={data_config.max_length}")
        kept = [p for p in pairs if all(any(t != IGNORE for t in side.labels[1:]) for side in (p.chosen, p.rejected))]
        if len(kept) < len(pairs):
            notes.append(f"{len(pairs) - len(kept)} pairs dropped: a reply has no tokens left after truncation")
        return kept

    train_pairs, validation_pairs = tokenize(train), tokenize(validation)
    note_vision_packing(data_config, tokenizer, notes)
    if not train_pairs:
        raise DataError("no usable training pairs", where=data_config.train)
    tokens = sum(len(p.chosen.input_ids) + len(p.rejected.input_ids) for p in train_pairs)
    describe = (f"data: {len(train_pairs)} train / {len(validation_pairs)} validation preference pairs, "
                f"{tokens:,} train tokens")
    return PreparedData(train_pairs, validation_pairs, notes, describe)


def pair_length(pair: TokenizedPair) -> int:
    return len(pair.chosen.input_ids) + len(pair.rejected.input_ids)


def collate_pairs(pairs: list[TokenizedPair], batching: Batching) -> dict:
    """Sequences [chosen 0, rejected 0, chosen 1, ...]; both sides of a pair share a row when packing.
    Pairs that carry the start model's log-probs give them as `reference` (2N,), in the same order."""
    import torch

    flat = [side for pair in pairs for side in (pair.chosen, pair.rejected)]
    batch = collate_sequences(flat, [[2 * i, 2 * i + 1] for i in range(len(pairs))], batching)
    batch["n_pairs"] = len(pairs)
    if pairs and all(pair.reference is not None for pair in pairs):
        batch["reference"] = torch.tensor([value for pair in pairs for value in pair.reference])
    return batch


def pair_batches(pairs, batching: Batching, per_batch: int = 8) -> list[dict]:
    """Validation pairs collated once, `per_batch` pairs at a time."""
    return [collate_pairs(pairs[i:i + per_batch], batching)
            for i in range(0, len(pairs), per_batch)]
