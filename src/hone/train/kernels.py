"""Fused kernels for a decoder layer's elementwise work on a GPU: RMSNorm, the rotary embedding and
SwiGLU. (The LoRA epilogue, the scaling and the sum of the low-rank update, is fused on every device
by `hone.methods.fused_lora`: the GEMM itself accumulates it.)

`train.kernels` picks them:
- `liger`: Liger Kernel's Triton kernels (`pip install liger-kernel`) take over the forward of this
  model's RMSNorm and SwiGLU MLP modules and, for CUDA tensors, the architecture's rotary function.
  Only for architectures whose norms, MLPs and rotary embedding are Llama's (`LIGER_ARCHITECTURES`).
- `compile`: torch.compile, regionally: each decoder layer's norms and MLP (the LoRA layers inside
  included), one compiled graph reused by every layer. Attention stays eager: it is one fused kernel
  already, and packed rows' per-batch segment bounds would recompile it for every batch.
- `none`: PyTorch's eager kernels.
- `auto` (default): `none` on the CPU, where the path stays as it is; on CUDA `liger` when Liger Kernel
  can be imported and the architecture is one it covers, else `compile`.

The losses of the fused paths equal the eager path's within bf16 rounding; `bench/gpu.py` checks it on
a GPU, and the tests check the compiled path on the CPU.
"""

from __future__ import annotations

import importlib.util
import sys
from types import MethodType

import torch

from hone.errors import ConfigError

KERNELS = ("auto", "none", "liger", "compile")
LIGER_ARCHITECTURES = frozenset({"llama", "mistral", "qwen2", "qwen3"})
LIGER_DEVICES = {"cuda"}  # where the Triton kernels run; tensors elsewhere take the modules' own forward


def liger_problem() -> str | None:
    """Why Liger Kernel cannot run in this environment, or None."""
    missing = [name for name in ("liger_kernel", "triton") if importlib.util.find_spec(name) is None]
    if missing:
        return f"train.kernels=liger needs {' and '.join(missing)} (pip install liger-kernel; it runs on CUDA GPUs)"
    return None


def resolve_kernels(choice: str, device_type: str, model_type: str | None, liger_ready: bool | None = None) -> str:
    """The kernels a run uses (`none` | `liger` | `compile`) for the `train.kernels` choice on this device
    and architecture; `liger_ready` defaults to whether Liger Kernel can be imported here."""
    if choice not in KERNELS:
        raise ConfigError(f"train.kernels is {choice!r}", where="train.kernels", hint=f"use one of {', '.join(KERNELS)}")
    ready = liger_problem() is None if liger_ready is None else liger_ready
    covered = model_type in LIGER_ARCHITECTURES
    if choice == "auto":
        if device_type != "cuda":
            return "none"
        return "liger" if ready and covered else "compile"
    if choice == "liger":
        if device_type != "cuda":
            raise ConfigError("train.kernels=liger runs Triton kernels, which need a CUDA GPU", where="train.kernels",
                              hint="use train.kernels=auto (none on the CPU) or compile")
        if not ready:
            raise ConfigError(liger_problem() or "Liger Kernel cannot be imported", where="train.kernels",
                              hint="install liger-kernel, or use train.kernels=compile")
        if not covered:
            raise ConfigError(f"Liger Kernel is not wired for model type {model_type!r} here", where="train.kernels",
                              hint=f"it covers {', '.join(sorted(LIGER_ARCHITECTURES))}; use train.kernels=compile")
    return choice


def use_kernels(model, kernels: str) -> str:
    """Apply resolved `kernels` to `model` (on its device); returns what changed, for the log."""
    if kernels == "liger":
        counts = fuse_with_liger(model)
        return (f"kernels: liger ({counts['norms']} RMSNorms, {counts['mlps']} SwiGLU MLPs, rotary embedding "
                f"{'fused' if counts['rotary'] else 'eager'})")
    if kernels == "compile":
        return f"kernels: compile ({compile_layers(model)} modules compiled, regionally)"
    return "kernels: none (eager)"


def decoder_layers(model) -> list:
    """The repeated blocks of a transformers decoder (what FSDP shards and compile compiles)."""
    try:
        return list(model.get_decoder().layers)
    except AttributeError:
        return []


def compile_layers(model, backend: str = "inductor") -> int:
    """torch.compile each decoder layer's MLP and norms (see the module docstring); returns how many."""
    count = 0
    for layer in decoder_layers(model):
        for name in ("input_layernorm", "mlp", "post_attention_layernorm"):
            part = getattr(layer, name, None)
            if isinstance(part, torch.nn.Module):
                part.compile(backend=backend)
                count += 1
    return count


def fuse_with_liger(model) -> dict:
    """Bind Liger's RMSNorm and SwiGLU to this model's modules (the instances, not the classes, so other
    models in the process stay as they are), and send the architecture's rotary function to Liger's for
    CUDA tensors. Each fused forward falls back to the module's own for tensors off the GPU."""
    from liger_kernel.transformers.functional import liger_rms_norm, liger_rope, liger_swiglu

    layers = decoder_layers(model)
    norms = [m for layer in layers for m in (layer.input_layernorm, layer.post_attention_layernorm)]
    final = getattr(model.get_decoder(), "norm", None)
    norms += [final] if final is not None else []
    for norm in norms:
        norm.forward = MethodType(_fused_rms_norm(liger_rms_norm), norm)
    act = getattr(model.config, "hidden_act", None)
    mlps = [layer.mlp for layer in layers] if act in ("silu", "swish") else []
    for mlp in mlps:
        mlp.forward = MethodType(_fused_swiglu(liger_swiglu), mlp)
    rotary = _fuse_rotary(layers, liger_rope)
    return {"norms": len(norms), "mlps": len(mlps), "rotary": rotary}


def _fused_rms_norm(kernel):
    def forward(self, hidden):
        if hidden.device.type not in LIGER_DEVICES:
            return type(self).forward(self, hidden)
        eps = getattr(self, "variance_epsilon", getattr(self, "eps", 1e-6))
        return kernel(hidden, self.weight, eps, 0.0, "llama", False)

    return forward


def _fused_swiglu(kernel):
    def forward(self, x):
        if x.device.type not in LIGER_DEVICES:
            return type(self).forward(self, x)
        return self.down_proj(kernel(self.gate_proj(x), self.up_proj(x)))

    return forward


class FusedRotary:
    """An architecture module's `apply_rotary_pos_emb` whose calls on CUDA tensors go to a fused kernel."""

    def __init__(self, plain, fused) -> None:
        self.plain = plain
        self.fused = fused

    def __call__(self, q, k, cos, sin, *args, **kwargs):
        if q.device.type in LIGER_DEVICES and not args and not kwargs:
            return self.fused(q, k, cos, sin)
        return self.plain(q, k, cos, sin, *args, **kwargs)


def _fuse_rotary(layers, kernel) -> bool:
    """Route the rotary function of the layers' attention module's architecture through `kernel`."""
    attention = getattr(layers[0], "self_attn", None) if layers else None
    module = sys.modules.get(type(attention).__module__) if attention is not None else None
    plain = getattr(module, "apply_rotary_pos_emb", None)
    if plain is None:
        return False
    if isinstance(plain, FusedRotary):
        plain = plain.plain
    module.apply_rotary_pos_emb = FusedRotary(plain, kernel)
    return True
