"""Heads that objectives train beside the method's parameters: a linear layer on the last token.

A reward model has one output (a scalar score), a classifier one per class. The head lives on the
model as `hone_head` (fp32, trainable whatever the method freezes), so the optimizer, gradient
clipping and checkpoints see it like any trainable parameter; the artifact stores it as
`head.safetensors` beside the method's files, and hone.json's `objective.head` names that file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from hone.errors import ModelError

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
