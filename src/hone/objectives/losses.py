"""Loss functions shared by objectives: pure tensor code, tested against plain PyTorch."""

from __future__ import annotations

import torch


def head_matmul_dtype(device_type: str, dtype: torch.dtype) -> torch.dtype:
    """The dtype the output head's matmuls run in: autocast's when autocast is on for the device (the
    weights' own dtype does not matter, as for any matmul under autocast), else the hidden states'."""
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else dtype


class _LinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of `hidden @ weight.T` without keeping the (tokens x vocab) logits.

    The gradients are computed chunk by chunk during the forward pass (as in fused
    linear-cross-entropy kernels) and only scaled in backward, so peak memory is one chunk of
    logits, and the flops equal a plain forward + backward. The matmuls run in `dtype` (bf16 under
    bf16 autocast, also for an fp32 head); softmax, loss and accumulation are at least fp32, and the
    gradients come back in the inputs' own dtypes. Its second output counts the tokens whose most
    likely prediction is the target (for token accuracy; no gradient).
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_size, dtype, softcap):  # hidden (N, H), weight (V, H), targets (N,)
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden) if need_h else None
        acc = torch.promote_types(dtype, torch.float32)  # at least fp32 for logits and the sum
        grad_w = torch.zeros_like(weight, dtype=acc) if need_w else None
        total = hidden.new_zeros((), dtype=acc)
        hits = torch.zeros((), dtype=torch.long, device=hidden.device)
        rows = torch.arange(min(chunk_size, hidden.shape[0]), device=hidden.device)
        w = weight.to(dtype)
        for start in range(0, hidden.shape[0], chunk_size):
            h = hidden[start:start + chunk_size].to(dtype)
            t = targets[start:start + chunk_size]
            logits = (h @ w.T).to(acc)  # (n, V); the matmul runs in `dtype`
            if softcap:  # Gemma 2's final soft-capping: cap * tanh(logits / cap)
                squashed = torch.tanh(logits / softcap)
                logits = squashed * softcap
            log_probs = torch.log_softmax(logits, dim=-1)  # one fused pass
            del logits
            r = rows[: h.shape[0]]
            total -= log_probs[r, t].sum()
            hits += log_probs.argmax(dim=-1).eq(t).sum()
            if need_h or need_w:
                probs = log_probs.exp_()  # softmax, in place
                probs[r, t] -= 1.0  # d loss / d logits
                if softcap:
                    probs *= 1.0 - squashed.square()  # through the tanh
                probs = probs.to(dtype)
                if need_h:
                    grad_h[start:start + chunk_size] = probs @ w
                if need_w:
                    grad_w += (probs.T @ h).to(acc)
        ctx.save_for_backward(grad_h, grad_w.to(weight.dtype) if need_w else None)
        ctx.mark_non_differentiable(hits)
        return total, hits

    @staticmethod
    def backward(ctx, grad_out, _grad_hits):
        grad_h, grad_w = ctx.saved_tensors
        gh = grad_h * grad_out if grad_h is not None else None
        gw = grad_w * grad_out if grad_w is not None else None
        return gh, gw, None, None, None, None


def linear_cross_entropy(hidden, weight, targets, chunk_size: int = 1024, softcap: float | None = None):
    """Sum over tokens of CE(hidden @ weight.T, targets), the logits soft-capped at `softcap` when given.
    hidden (N, H), weight (V, H), targets (N,). Under autocast the matmuls run in autocast's dtype
    (`head_matmul_dtype`), the loss in fp32."""
    return linear_cross_entropy_and_hits(hidden, weight, targets, chunk_size, softcap)[0]


def linear_cross_entropy_and_hits(hidden, weight, targets, chunk_size: int = 1024, softcap: float | None = None):
    """(summed CE as `linear_cross_entropy`, the number of tokens whose argmax is the target: an int)."""
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0 + weight.sum() * 0.0, 0
    device = hidden.device.type
    dtype = head_matmul_dtype(device, hidden.dtype)
    with torch.autocast(device, enabled=False):
        total, hits = _LinearCrossEntropy.apply(hidden, weight, targets, chunk_size, dtype, softcap)
    return total, int(hits)


class _LinearTokenLogProbs(torch.autograd.Function):
    """Per-token log p(target) of `hidden @ weight.T`, chunked like `_LinearCrossEntropy`.

    d log p_t / d hidden_t = (onehot_t - softmax_t) @ weight is formed during the forward pass, one
    chunk of logits at a time, and only scaled by each token's incoming gradient in backward. The
    weight gets no gradient here (callers fall back to plain autograd when it trains).
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_size, dtype):  # hidden (N, H), weight (V, H), targets (N,)
        need_h = ctx.needs_input_grad[0]
        acc = torch.promote_types(dtype, torch.float32)
        out = hidden.new_empty(hidden.shape[0], dtype=acc)
        grad_h = torch.empty_like(hidden) if need_h else None
        rows = torch.arange(min(chunk_size, hidden.shape[0]), device=hidden.device)
        w = weight.to(dtype)
        for start in range(0, hidden.shape[0], chunk_size):
            h = hidden[start:start + chunk_size].to(dtype)
            t = targets[start:start + chunk_size]
            log_probs = torch.log_softmax((h @ w.T).to(acc), dim=-1)
            r = rows[: h.shape[0]]
            out[start:start + chunk_size] = log_probs[r, t]
            if need_h:
                minus = log_probs.exp_().neg_()  # -softmax, in place
                minus[r, t] += 1.0  # onehot - softmax
                grad_h[start:start + chunk_size] = minus.to(dtype) @ w
        ctx.save_for_backward(grad_h)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (grad_h,) = ctx.saved_tensors
        gh = grad_h * grad_out[:, None].to(grad_h.dtype) if grad_h is not None else None
        return gh, None, None, None, None


def linear_token_log_probs(hidden, weight, targets, chunk_size: int = 1024):
    """log softmax(hidden @ weight.T)[target] per token (N,) without keeping the (N x vocab) logits.
    Under autocast the matmuls run in autocast's dtype (`head_matmul_dtype`), the softmax in fp32."""
    device = hidden.device.type
    dtype = head_matmul_dtype(device, hidden.dtype)
    with torch.autocast(device, enabled=False):
        if weight.requires_grad:
            logits = (hidden.to(dtype) @ weight.to(dtype).T).float()
            return torch.log_softmax(logits, dim=-1).gather(1, targets[:, None])[:, 0]
        if hidden.shape[0] == 0:
            return hidden.sum(dim=-1) * 0.0
        return _LinearTokenLogProbs.apply(hidden, weight, targets, chunk_size, dtype)


@torch.no_grad()
def linear_token_entropy(hidden, weight, chunk_size: int = 1024):
    """Entropy of softmax(hidden @ weight.T) per token (N,), chunk by chunk, without gradients; the
    matmuls run in `head_matmul_dtype`, the softmax in at least fp32."""
    device = hidden.device.type
    dtype = head_matmul_dtype(device, hidden.dtype)
    out = hidden.new_empty(hidden.shape[0], dtype=torch.promote_types(hidden.dtype, torch.float32))
    with torch.autocast(device, enabled=False):
        head = weight.to(dtype)
        for start in range(0, hidden.shape[0], chunk_size):
            logits = hidden[start:start + chunk_size].to(dtype) @ head.T
            log_probs = torch.log_softmax(logits.to(out.dtype), dim=-1)
            out[start:start + chunk_size] = -(log_probs.exp() * log_probs).sum(dim=-1)
    return out
