"""Segment attention: causal attention computed separately for each packed example.

A packed row holds several examples; a dense block-diagonal mask gives the right answer but makes
attention pay for the whole (row x row) square. Here each example (segment) gets its own causal
SDPA call, so attention costs what the examples would cost alone, and a micro-batch can be one
row with no padding at all. It is registered with transformers' attention interface under
`hone_segments`; without segments (generation, a plain forward) it is exactly SDPA.
"""

from __future__ import annotations

import torch

NAME = "hone_segments"


def segment_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                      scaling: float | None = None, hone_segments=None, **kwargs):
    """query (B, H, T, D), key/value (B, Hkv, T, D) -> (B, T, H, D); segments partition each row."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    if hone_segments is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    groups = query.shape[1] // key.shape[1]
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    p = dropout if module.training else 0.0
    rows = []
    for b, bounds in enumerate(hone_segments):
        parts = [torch.nn.functional.scaled_dot_product_attention(
            query[b:b + 1, :, s:e], key[b:b + 1, :, s:e], value[b:b + 1, :, s:e],
            dropout_p=p, is_causal=True, scale=scaling) for s, e in bounds]
        rows.append(torch.cat(parts, dim=2) if len(parts) > 1 else parts[0])
    out = torch.cat(rows, dim=0) if len(rows) > 1 else rows[0]
    return out.transpose(1, 2).contiguous(), None


def segment_bounds(segment_ids: torch.Tensor) -> list[list[tuple[int, int]]]:
    """(R, L) segment ids -> per row, (start, end) of each run of equal ids, covering the whole row."""
    bounds = []
    for row in segment_ids.tolist():
        runs, start = [], 0
        for t in range(1, len(row) + 1):
            if t == len(row) or row[t] != row[start]:
                runs.append((start, t))
                start = t
        bounds.append(runs)
    return bounds


def use_segment_attention(model) -> bool:
    """Switch a transformers model to segment attention; False where the architecture cannot."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(NAME, segment_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    try:
        model.set_attn_implementation(NAME)
    except (ValueError, AttributeError, NotImplementedError):
        return False
    return getattr(model.config, "_attn_implementation", None) == NAME
