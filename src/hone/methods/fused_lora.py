"""A fused forward for PEFT's LoRA linear layers: the same maths with fewer full-size passes.

PEFT computes `base(x) + lora_B(lora_A(x)) * scaling`. The scaling multiplies, and the sum adds, a
(tokens x out_features) tensor, and backward does both again; on CPUs, where memory bandwidth
rather than flops bounds such passes, that costs more than the low-rank matmuls themselves. Here
the scaling is applied to the rank-r intermediate, and the low-rank product is accumulated into the
base output by the GEMM itself (`addmm_`, beta = 1), in forward and in backward.

Only the module's class changes (to a subclass whose forward takes this path): parameters, state
dict, saving, merging and PEFT's adapter switching are untouched. Whenever the fused path does not
apply (DoRA or another variant, dropout, several active adapters, disabled or merged adapters, a
quantized or trainable base weight, mixed-adapter batches) the layer runs PEFT's own forward.
"""

from __future__ import annotations

import torch
from peft.tuners.lora.layer import Linear as LoraLinear


class _FusedLora(torch.autograd.Function):
    """y = x W^T + b + s (x A^T) B^T, with W frozen; gradients for x, A, B (and b when it trains)."""

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scaling, dtype):
        ctx.dtypes = [None if t is None else t.dtype for t in (x, bias, lora_a, lora_b)]
        ctx.scaling = scaling
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).to(dtype)
        weight, lora_a, lora_b = weight.to(dtype), lora_a.to(dtype), lora_b.to(dtype)
        low = (x2 @ lora_a.T).mul_(scaling)  # (N, r): the scaling costs r per token, not out_features
        y = torch.nn.functional.linear(x2, weight, None if bias is None else bias.to(dtype))
        y.addmm_(low, lora_b.T)
        ctx.save_for_backward(x2, weight, lora_a, lora_b, low)
        return y.view(*shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, grad):
        x2, weight, lora_a, lora_b, low = ctx.saved_tensors
        x_dtype, bias_dtype, a_dtype, b_dtype = ctx.dtypes
        g = grad.reshape(-1, grad.shape[-1]).to(x2.dtype)
        grad_low = (g @ lora_b).mul_(ctx.scaling)  # (N, r)
        grad_x = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = (g @ weight).addmm_(grad_low, lora_a).view(*grad.shape[:-1], x2.shape[-1]).to(x_dtype)
        if ctx.needs_input_grad[2]:
            grad_bias = g.sum(0).to(bias_dtype)
        grad_a = (grad_low.T @ x2).to(a_dtype) if ctx.needs_input_grad[3] else None
        grad_b = (g.T @ low).to(b_dtype) if ctx.needs_input_grad[4] else None
        return grad_x, None, grad_bias, grad_a, grad_b, None, None


class FusedLoraLinear(LoraLinear):
    """PEFT's LoRA Linear whose forward takes the fused path when it applies."""

    def forward(self, x, *args, **kwargs):
        name = None if args or kwargs else self._fused_adapter()
        if name is None:
            return super().forward(x, *args, **kwargs)
        base = self.base_layer
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        with torch.autocast(device, enabled=False):
            return _FusedLora.apply(x, base.weight, base.bias, self.lora_A[name].weight,
                                    self.lora_B[name].weight, self.scaling[name], dtype)

    def _fused_adapter(self) -> str | None:
        """The one active adapter when the fused path computes exactly what PEFT's forward would."""
        if self.disable_adapters or self.merged or len(self.active_adapters) != 1:
            return None
        name = self.active_adapters[0]
        if name not in self.lora_A or name in getattr(self, "lora_variant", {}):
            return None
        if not isinstance(self.lora_dropout[name], torch.nn.Identity):
            return None
        if self.lora_A[name].bias is not None or self.lora_B[name].bias is not None:
            return None
        base = self.base_layer
        if type(base) is not torch.nn.Linear or base.weight.requires_grad:
            return None
        if type(base.weight.data) is not torch.Tensor:  # a 4-bit NF4 weight would be saved de-quantized
            return None
        return name


def fuse(model) -> int:
    """Switch every plain PEFT LoRA Linear in `model` to the fused forward; returns how many."""
    count = 0
    for module in model.modules():
        if type(module) is LoraLinear:
            module.__class__ = FusedLoraLinear
            count += 1
    return count
