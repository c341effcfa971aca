"""Choosing and applying the matmul precision of a run."""

from __future__ import annotations

import contextlib
from functools import lru_cache

import torch


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True on CPUs with bf16 dot-product instructions (AVX512-BF16 or AMX), where bf16 matmuls
    run about 2.5x faster than fp32; elsewhere bf16 is emulated and slower than fp32."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: str = "cpu") -> str:
    if precision != "auto":
        return precision
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def autocast(precision: str, device: str = "cpu"):
    if precision == "bf16":
        return torch.autocast(device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_for_precision(model, precision: str) -> None:
    """Under bf16, store frozen weights in bf16 (half the memory, no per-step casts); trainable
    weights stay fp32 so the optimizer updates full-precision masters. Adapter layers' own casting of
    inputs to their fp32 weights is switched off: autocast already runs those matmuls in bf16."""
    if precision != "bf16":
        return
    for param in model.parameters():
        if not param.requires_grad and param.dtype == torch.float32:
            param.data = param.data.to(torch.bfloat16)
    for module in model.modules():
        if hasattr(module, "cast_input_dtype_enabled"):
            module.cast_input_dtype_enabled = False
