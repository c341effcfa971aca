"""Choosing and applying the device and matmul precision of a run."""

from __future__ import annotations

import contextlib
from functools import lru_cache

import torch

from hone.errors import ConfigError

HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True on CPUs with bf16 dot-product instructions (AVX512-BF16 or AMX), where bf16 matmuls
    run about 2.5x faster than fp32; elsewhere bf16 is emulated and slower than fp32."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """`auto` is CUDA when a GPU is visible, else CPU; under torchrun each process takes its local GPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("train.device is cuda but no CUDA GPU is visible", where="train.device",
                              hint="use train.device=auto or cpu, or check CUDA_VISIBLE_DEVICES and the driver")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def resolve_precision(precision: str, device: str = "cpu") -> str:
    if precision != "auto":
        return precision
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def autocast(precision: str, device: str = "cpu"):
    """bf16/fp16 autocast on `device`; fp32 runs as written."""
    if precision in HALF:
        return torch.autocast(device, dtype=HALF[precision])
    return contextlib.nullcontext()


def grad_scaler(precision: str, device: str, sharded: bool = False):
    """A GradScaler for fp16 (its gradients underflow without one); None for fp32 and bf16.

    Under FSDP the scaler must agree on `found_inf` across ranks, so it is the sharded kind.
    """
    if precision != "fp16":
        return None
    if sharded:
        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

        return ShardedGradScaler(device)
    return torch.amp.GradScaler(device)


def prepare_for_precision(model, precision: str, *, keep_frozen_fp32: bool = False) -> None:
    """Under bf16/fp16, store frozen weights in that dtype (half the memory, no per-step casts);
    trainable weights stay fp32 so the optimizer updates full-precision masters. Adapter layers' own
    casting of inputs to their fp32 weights is switched off: autocast already runs those matmuls in
    half precision. FSDP needs one dtype per sharded group, so it keeps frozen weights fp32
    (`keep_frozen_fp32`) and casts them as it gathers them (its MixedPrecisionPolicy)."""
    if precision not in HALF:
        return
    if not keep_frozen_fp32:
        for param in model.parameters():
            # a tensor subclass (a 4-bit NF4 weight) would de-quantize on .to()
            if not param.requires_grad and param.dtype == torch.float32 and type(param.data) is torch.Tensor:
                param.data = param.data.to(HALF[precision])
    for module in model.modules():
        if hasattr(module, "cast_input_dtype_enabled"):
            module.cast_input_dtype_enabled = False
