"""Segment attention: causal attention computed separately for each packed example.

A packed row holds several examples; a dense block-diagonal mask gives the right answer but makes
attention pay for the whole (row x row) square. Here each example (segment) gets its own causal
SDPA call, so attention costs what the examples would cost alone, and a micro-batch can be one
row with no padding at all. It is registered with transformers' attention interface under
`hone_segments`; without segments (generation, a plain forward) it is exactly SDPA.

On CUDA in bf16/fp16 the whole batch goes to one variable-length flash-attention call over the
segments' cumulative boundaries (`torch.nn.attention.varlen`, else the flash-attn package); on the
CPU, in fp32, or where neither kernel exists, each segment gets its own SDPA call.
"""

from __future__ import annotations

from functools import lru_cache

import torch

NAME = "hone_segments"


def segment_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                      scaling: float | None = None, hone_segments=None, **kwargs):
    """query (B, H, T, D), key/value (B, Hkv, T, D) -> (B, T, H, D); segments partition each row."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    if hone_segments is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    p = dropout if module.training else 0.0
    kernel = varlen_kernel() if query.is_cuda and query.dtype in (torch.bfloat16, torch.float16) else None
    if kernel is not None and p == 0.0:
        return _varlen_attention(kernel, query, key, value, hone_segments, scaling), None
    groups = query.shape[1] // key.shape[1]
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    rows = []
    for q, k, v, bounds in zip(query.split(1), key.split(1), value.split(1), hone_segments):
        # split, not slicing: a slice's backward writes its gradient into a zeroed full-size tensor,
        # once per segment; split's backward concatenates the segments' gradients once
        sizes = [e - s for s, e in bounds]
        parts = [torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, dropout_p=p, is_causal=True,
                                                                  scale=scaling)
                 for qs, ks, vs in zip(q.split(sizes, dim=2), k.split(sizes, dim=2), v.split(sizes, dim=2))]
        rows.append(torch.cat(parts, dim=2) if len(parts) > 1 else parts[0])
    out = torch.cat(rows, dim=0) if len(rows) > 1 else rows[0]
    return out.transpose(1, 2).contiguous(), None


class SegmentBounds(list):
    """Per row, the (start, end) of each segment; also their cumulative offsets over the flattened
    batch (`cu_seqlens`, int32, as varlen kernels take them), computed once per device."""

    def cu_seqlens(self, device) -> tuple[torch.Tensor, int]:
        cache = self.__dict__.setdefault("_cu", {})
        if str(device) not in cache:
            width = max((row[-1][1] for row in self if row), default=0)
            offsets, longest = [0], 0
            for r, row in enumerate(self):
                for start, end in row:
                    offsets.append(r * width + end)
                    longest = max(longest, end - start)
            cache[str(device)] = (torch.tensor(offsets, dtype=torch.int32, device=device), longest)
        return cache[str(device)]


@lru_cache(maxsize=1)
def varlen_kernel():
    """The variable-length flash-attention function available here, or None."""
    try:
        from torch.nn.attention.varlen import varlen_attn

        return "torch", varlen_attn
    except ImportError:
        pass
    try:
        from flash_attn import flash_attn_varlen_func

        return "flash_attn", flash_attn_varlen_func
    except ImportError:
        return None


def _varlen_attention(kernel, query, key, value, segments: SegmentBounds, scaling):
    """(B, H, T, D) queries, (B, Hkv, T, D) keys/values -> (B, T, H, D), causal within each segment."""
    batch, heads, length, dim = query.shape
    q = query.transpose(1, 2).reshape(batch * length, heads, dim)
    k = key.transpose(1, 2).reshape(batch * length, key.shape[1], dim)
    v = value.transpose(1, 2).reshape(batch * length, value.shape[1], dim)
    if not isinstance(segments, SegmentBounds):
        segments = SegmentBounds(segments)
    cu, longest = segments.cu_seqlens(query.device)
    source, fn = kernel
    if source == "torch":
        out = fn(q, k, v, cu, cu, longest, longest, scale=scaling, window_size=(-1, 0),
                 enable_gqa=key.shape[1] != heads)
    else:
        out = fn(q, k, v, cu, cu, longest, longest, softmax_scale=scaling, causal=True)
    return out.reshape(batch, length, heads, dim)


def segment_bounds(segment_ids: torch.Tensor) -> SegmentBounds:
    """(R, L) segment ids -> per row, (start, end) of each run of equal ids, covering the whole row."""
    bounds = SegmentBounds()
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
