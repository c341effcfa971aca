"""L2-SP (Li et al., 2018, "Explicit inductive bias for transfer learning"): a penalty that pulls the
fine-tuned weights toward the pretrained ones instead of toward zero.

    penalty = alpha / 2 * sum over trainable weights w with a base value w0 of ||w - w0||^2

Only weights that existed before the method was applied have a base value: full or layer tuning
trains them; LoRA's A/B matrices are new (their base is the frozen weight) and get no penalty.
hone adds the penalty's gradient alpha * (w - w0) after backward, once per optimizer step, so it does
not depend on how many micro-batches the step has.
"""

from __future__ import annotations

import torch


class L2SP:
    def __init__(self, params: dict[str, torch.nn.Parameter], alpha: float) -> None:
        self.alpha = alpha
        self.params = params
        self.base = {name: p.detach().clone() for name, p in params.items()}

    @classmethod
    def from_model(cls, model, base_param_ids: set[int], alpha: float) -> "L2SP":
        """Penalise the trainable parameters of `model` that were parameters of the base (by identity)."""
        params = {n: p for n, p in model.named_parameters() if p.requires_grad and id(p) in base_param_ids}
        return cls(params, alpha)

    def penalty(self) -> torch.Tensor:
        total = torch.zeros(())
        for name, p in self.params.items():
            total = total + (p.float() - self.base[name].float()).pow(2).sum()
        return 0.5 * self.alpha * total

    @torch.no_grad()
    def add_gradient(self) -> float:
        """Add alpha * (w - w0) to each penalised weight's gradient; returns the penalty's value."""
        value = 0.0
        for name, p in self.params.items():
            diff = p - self.base[name]
            value += float(diff.float().pow(2).sum())
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            p.grad.add_(diff, alpha=self.alpha)
        return 0.5 * self.alpha * value
