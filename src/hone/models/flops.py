"""Model FLOPs of a training step, counted from the layers' logical shapes.

A linear layer of `in x out` costs 2 * in * out FLOPs per token forward, 2 * in * out backward for the
input's gradient, and 2 * in * out more for the weight's gradient when it trains. The shape comes
from the layer (`in_features`, `out_features`), never from the stored weight: a 4-bit weight packs
two values per byte into a (in * out / 2, 1) tensor, and counting its elements would halve the layer.
Attention adds 6 * n * d per layer for a token of an n-token example (causal halving counted:
forward 2 n d for scores and values, backward twice that). Embedding lookups are free; recomputation
by activation checkpointing is not model FLOPs.
"""

from __future__ import annotations

import torch


def linear_weights(model, *, trained: bool = False) -> int:
    """Logical weights (in x out) of the model's linear layers, or of those whose weight trains."""
    return sum(m.in_features * m.out_features for m in model.modules()
               if isinstance(m, torch.nn.Linear) and (not trained or m.weight.requires_grad))


def training_flops(model, tokens: int, segment_lengths, *, hidden: int, layers: int) -> int:
    """Model FLOPs of forward and backward over `tokens` tokens packed as segments of `segment_lengths`."""
    dense = tokens * (4 * linear_weights(model) + 2 * linear_weights(model, trained=True))
    return dense + 6 * hidden * layers * sum(n * n for n in segment_lengths)
