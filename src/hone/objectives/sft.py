"""Supervised fine-tuning: next-token cross-entropy on the target tokens of each example."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from hone.config.base import Section
from hone.objectives.losses import linear_cross_entropy


class Config(Section):
    type: Literal["sft"] = "sft"
    loss_chunk_tokens: int = Field(1024, gt=0)
    """Target tokens per chunk of output-head logits (bounds the logits' memory)."""


def build(config: Config) -> "SFT":
    return SFT(config.loss_chunk_tokens)


def hidden_states(model, batch):
    """The decoder's final hidden states (R, L, H) for a collated batch; no logits are computed.

    A batch collated without a mask is meant for segment attention (`hone.models.attention`). A
    method that changes how hidden states are computed (virtual tokens) sets `model.hone_hidden_states`.
    """
    custom = getattr(model, "hone_hidden_states", None)
    if custom is not None:
        return custom(batch)
    if batch["attention_mask"] is None:
        attention = {"hone_segments": batch["segments"]}
    else:
        attention = {"attention_mask": batch["attention_mask"]}
    out = model.get_decoder()(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                              use_cache=False, **attention)
    return out.last_hidden_state


class SFT:
    def __init__(self, chunk_tokens: int) -> None:
        self.chunk_tokens = chunk_tokens

    def units(self, batch) -> int:
        return int(batch["n_targets"])

    def loss(self, model, batch):
        """Summed CE over target tokens; output-head logits only at target positions, in chunks."""
        hidden = hidden_states(model, batch)
        targets = batch["targets"]  # (R, L), already shifted: the next token of the same example
        keep = targets.ne(-100)
        head = model.get_output_embeddings().weight
        with torch.autocast(hidden.device.type, enabled=False):  # softmax and loss in fp32, also under autocast
            h = hidden[keep]
            loss_sum = linear_cross_entropy(h, head.to(h.dtype), targets[keep], self.chunk_tokens)
        return loss_sum, {"loss_sum": loss_sum.detach().item(), "targets": int(keep.sum())}
