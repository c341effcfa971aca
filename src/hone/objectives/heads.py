"""The forward pass through a head that an objective trains (see `hone.models.heads`)."""

from __future__ import annotations

import torch

from hone.objectives.sft import hidden_states


def head_outputs(model, batch):
    """The head applied to the final hidden state of each sequence's last token: (N, outputs)."""
    hidden = hidden_states(model, batch)
    rows, positions = batch["last"][:, 0], batch["last"][:, 1]
    last = hidden[rows, positions]
    with torch.autocast(last.device.type, enabled=False):
        return model.hone_head(last.float())
