"""Loss functions shared by objectives: pure tensor code, tested against plain PyTorch."""

from __future__ import annotations

import torch


class _LinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of `hidden @ weight.T` without keeping the (tokens x vocab) logits.

    The gradients are computed chunk by chunk during the forward pass (as in fused
    linear-cross-entropy kernels) and only scaled in backward, so peak memory is one chunk of
    logits, and the flops equal a plain forward + backward.
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_size):  # hidden (N, H), weight (V, H), targets (N,)
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_w else None
        total = hidden.new_zeros((), dtype=torch.float32)
        rows = torch.arange(min(chunk_size, hidden.shape[0]), device=hidden.device)
        for start in range(0, hidden.shape[0], chunk_size):
            h = hidden[start:start + chunk_size]
            t = targets[start:start + chunk_size]
            logits = (h @ weight.T).float()  # (n, V)
            lse = torch.logsumexp(logits, dim=-1)
            r = rows[: h.shape[0]]
            total += (lse - logits[r, t]).sum()
            if need_h or need_w:
                probs = logits.sub_(lse[:, None]).exp_()  # softmax, in place
                probs[r, t] -= 1.0  # d loss / d logits
                probs = probs.to(hidden.dtype)
                if need_h:
                    grad_h[start:start + chunk_size] = probs @ weight
                if need_w:
                    grad_w += (probs.T @ h).float()
        ctx.save_for_backward(grad_h, grad_w.to(weight.dtype) if need_w else None)
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        gh = grad_h * grad_out if grad_h is not None else None
        gw = grad_w * grad_out if grad_w is not None else None
        return gh, gw, None, None


def linear_cross_entropy(hidden, weight, targets, chunk_size: int = 1024):
    """Sum over tokens of CE(hidden @ weight.T, targets).  hidden (N, H), weight (V, H), targets (N,)."""
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0 + weight.sum() * 0.0
    return _LinearCrossEntropy.apply(hidden, weight, targets, chunk_size)
