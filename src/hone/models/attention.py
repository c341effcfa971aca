"""Segment attention: causal attention computed separately for each packed example.

A packed row holds several examples; a dense block-diagonal mask gives the right answer but makes
attention pay for the whole (row x row) square. Here each example (segment) gets its own causal
SDPA call, so attention costs what the examples would cost alone, and a micro-batch can be one
row with no padding at all. It is registered with transformers' attention interface under
`hone_segments`; without segments (generation, a plain forward) it is exactly SDPA.

On CUDA in bf16/fp16 the whole batch goes to one variable-length flash-attention call over the
segments' cumulative boundaries (`torch.nn.attention.varlen`, else the flash-attn package); on the
CPU, in fp32, or where neither kernel exists, each segment gets its own SDPA call. Under autocast
the queries, keys and values are computed in autocast's dtype whatever dtype they arrive in: with
fp32 master weights (full fine-tuning) the rotary embedding promotes them to fp32, which would
otherwise send a bf16 run down the per-segment path (`segment_path` decides; tests pin it). A layer
with a sliding window, soft-capped scores (Gemma 2) or attention sinks (GPT-OSS) runs the
architecture's own eager attention per segment instead, with the window in each segment's causal mask.
"""

from __future__ import annotations

import inspect
import math
import sys
from functools import lru_cache

import torch

NAME = "hone_segments"


def segment_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                      scaling: float | None = None, hone_segments=None, **kwargs):
    """query (B, H, T, D), key/value (B, Hkv, T, D) -> (B, T, H, D); segments partition each row."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    if hone_segments is None:
        if kwargs.get("softcap") is not None or kwargs.get("s_aux") is not None:  # SDPA has neither
            return eager_of(module)(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                    **kwargs)
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    if needs_eager(kwargs):
        return _eager_segments(module, query, key, value, dropout, scaling, hone_segments, **kwargs)
    p = dropout if module.training else 0.0
    device = query.device.type
    cast = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    kernel = varlen_kernel() if device == "cuda" else None
    path, dtype = segment_path(device, query.dtype, cast, kernel is not None and p == 0.0)
    query, key, value = query.to(dtype), key.to(dtype), value.to(dtype)
    if path == "varlen":
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


def segment_path(device_type: str, dtype: torch.dtype, autocast_dtype: torch.dtype | None,
                 varlen_available: bool) -> tuple[str, torch.dtype]:
    """How packed segments attend: ("varlen" | "per segment", the dtype of the computation).

    Autocast's dtype wins over the inputs' (fp32 queries from an fp32 rotary embedding included);
    the variable-length kernel takes half precision on CUDA, everything else goes segment by segment."""
    dtype = autocast_dtype or dtype
    if device_type == "cuda" and varlen_available and dtype in (torch.bfloat16, torch.float16):
        return "varlen", dtype
    return "per segment", dtype


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
    """(source, attend) for the variable-length flash attention available here, or None.

    `attend(q, k, v, cu_seqlens, longest, scale)` takes (tokens, heads, dim) tensors, keys and values
    with as many or fewer heads than the queries, and is causal within each segment."""
    try:
        from torch.nn.attention.varlen import varlen_attn

        return "torch", torch_varlen(varlen_attn)
    except ImportError:
        pass
    try:
        from flash_attn import flash_attn_varlen_func
    except ImportError:
        return None

    def attend(q, k, v, cu, longest, scale):
        return flash_attn_varlen_func(q, k, v, cu, cu, longest, longest, softmax_scale=scale, causal=True)

    return "flash_attn", attend


def needs_eager(kwargs: dict) -> bool:
    """A sliding window, soft-capped scores or attention sinks: features per-segment causal SDPA leaves
    out (without segments, transformers' own mask holds the window and SDPA is right)."""
    return any(kwargs.get(name) is not None for name in ("sliding_window", "softcap", "s_aux"))


def eager_of(module):
    """The architecture's own eager attention function (it applies soft-capping and sinks)."""
    return sys.modules[type(module).__module__].eager_attention_forward


def _eager_segments(module, query, key, value, dropout, scaling, segments, **kwargs):
    """The architecture's eager attention run per segment, with a causal mask that also holds the
    layer's sliding window."""
    eager = eager_of(module)
    window = kwargs.get("sliding_window")
    rows = []
    for q, k, v, bounds in zip(query.split(1), key.split(1), value.split(1), segments):
        sizes = [e - s for s, e in bounds]
        parts = [eager(module, qs, ks, vs, causal_window_mask(qs.shape[2], window, qs.dtype, qs.device),
                       dropout=dropout, scaling=scaling, **kwargs)[0]
                 for qs, ks, vs in zip(q.split(sizes, dim=2), k.split(sizes, dim=2), v.split(sizes, dim=2))]
        rows.append(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])
    return (torch.cat(rows, dim=0) if len(rows) > 1 else rows[0]), None


def causal_window_mask(length: int, window: int | None, dtype, device) -> torch.Tensor:
    """(1, 1, L, L) additive mask: token i sees tokens j <= i, and with a window only j > i - window
    (transformers' sliding-window rule)."""
    i = torch.arange(length, device=device)[:, None]
    j = torch.arange(length, device=device)[None, :]
    allowed = j <= i
    if window is not None:
        allowed &= j > i - window
    return torch.zeros(length, length, dtype=dtype, device=device).masked_fill(
        ~allowed, torch.finfo(dtype).min)[None, None]


def torch_varlen(varlen_attn):
    """`attend` over torch's `varlen_attn`, whose keywords differ between releases: causal masking is
    `window_size=(-1, 0)` or (before it) `is_causal=True`; grouped-query keys and values go in as they
    are with `enable_gqa`, else with their heads repeated; a scale without the `scale` keyword is
    folded into the queries (the kernel's own is 1/sqrt(dim))."""
    params = inspect.signature(varlen_attn).parameters
    causal = {"window_size": (-1, 0)} if "window_size" in params else {"is_causal": True}

    def attend(q, k, v, cu, longest, scale):
        options = dict(causal)
        if k.shape[1] != q.shape[1]:
            if "enable_gqa" in params:
                options["enable_gqa"] = True
            else:
                groups = q.shape[1] // k.shape[1]
                k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        if scale is not None:
            if "scale" in params:
                options["scale"] = scale
            else:
                q = q * (scale * math.sqrt(q.shape[-1]))
        return varlen_attn(q, k, v, cu, cu, longest, longest, **options)

    return attend


def _varlen_attention(kernel, query, key, value, segments: SegmentBounds, scaling):
    """(B, H, T, D) queries, (B, Hkv, T, D) keys/values -> (B, T, H, D), causal within each segment."""
    batch, heads, length, dim = query.shape
    q = query.transpose(1, 2).reshape(batch * length, heads, dim)
    k = key.transpose(1, 2).reshape(batch * length, key.shape[1], dim)
    v = value.transpose(1, 2).reshape(batch * length, value.shape[1], dim)
    if not isinstance(segments, SegmentBounds):
        segments = SegmentBounds(segments)
    cu, longest = segments.cu_seqlens(query.device)
    out = kernel[1](q, k, v, cu, longest, scaling)
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
