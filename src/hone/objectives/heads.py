"""Heads that objectives train beside the method's parameters: a linear layer on the last token.

A reward model has one output (a scalar score), a classifier one per class. The head lives on the
model as `hone_head` (fp32, trainable whatever the method freezes), so the optimizer, gradient
clipping and checkpoints see it like any trainable parameter; the artifact stores it as
`head.safetensors` beside the method's files.
"""

from __future__ import annotations

from pathlib import Path

import torch

from hone.data.batching import Batching
from hone.data.pack import collate, pack_rows
from hone.errors import ModelError
from hone.objectives.sft import hidden_states

HEAD_FILE = "head.safetensors"


def attach_head(model, outputs: int):
    """Give `model` a trainable `hone_head` Linear(hidden, outputs), small normal init, zero bias."""
    hidden = model.config.hidden_size
    head = torch.nn.Linear(hidden, outputs)
    with torch.no_grad():
        head.weight.normal_(0.0, 1.0 / (hidden + 1) ** 0.5)
        head.bias.zero_()
    model.hone_head = head.to(next(model.parameters()).device)
    return model


def head_outputs(model, batch):
    """The head applied to the final hidden state of each sequence's last token: (N, outputs)."""
    hidden = hidden_states(model, batch)
    rows, positions = batch["last"][:, 0], batch["last"][:, 1]
    last = hidden[rows, positions]
    with torch.autocast(last.device.type, enabled=False):
        return model.hone_head(last.float())


def save_head(model, directory) -> None:
    from safetensors.torch import save_file

    head = model.hone_head
    save_file({"weight": head.weight.detach().contiguous().cpu(), "bias": head.bias.detach().contiguous().cpu()},
              Path(directory) / HEAD_FILE)


def load_head(model, directory):
    """Attach the head saved in an artifact directory."""
    from safetensors.torch import load_file

    path = Path(directory) / HEAD_FILE
    if not path.is_file():
        raise ModelError(f"no {HEAD_FILE} in the artifact", where=str(directory),
                         hint="the run did not finish writing its artifact; train it again")
    state = load_file(path)
    attach_head(model, state["weight"].shape[0])
    model.hone_head.load_state_dict(state)
    return model


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
