import pytest
import torch

from torch.utils._python_dispatch import TorchDispatchMode

from hone.objectives.losses import (head_matmul_dtype, linear_cross_entropy, linear_cross_entropy_and_hits,
                                    linear_token_log_probs)


@pytest.mark.parametrize("chunk", [1, 7, 64])
@pytest.mark.parametrize("weight_trains", [False, True])
@pytest.mark.parametrize("softcap", [None, 3.0])
def test_linear_cross_entropy_matches_plain_cross_entropy(chunk, weight_trains, softcap):
    torch.manual_seed(0)
    hidden = torch.randn(23, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(40, 16, dtype=torch.float64, requires_grad=weight_trains)
    targets = torch.randint(0, 40, (23,))
    loss = linear_cross_entropy(hidden, weight, targets, chunk, softcap)
    grads = torch.autograd.grad(loss * 3.0, [hidden, weight] if weight_trains else [hidden])

    logits = hidden @ weight.T
    if softcap:  # soft-capped logits, as Gemma 2 computes them
        logits = torch.tanh(logits / softcap) * softcap
    ref = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    ref_grads = torch.autograd.grad(ref * 3.0, [hidden, weight] if weight_trains else [hidden])
    assert loss.item() == pytest.approx(ref.item(), rel=1e-12)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r)


@pytest.mark.parametrize("chunk", [1, 5, 64])
def test_hits_count_the_tokens_whose_argmax_is_the_target(chunk):
    torch.manual_seed(1)
    hidden, weight = torch.randn(17, 8), torch.randn(12, 8)
    predicted = (hidden @ weight.T).argmax(-1)
    targets = torch.where(torch.arange(17) % 3 == 0, predicted, (predicted + 1) % 12)  # every third is right
    _, hits = linear_cross_entropy_and_hits(hidden, weight, targets, chunk)
    assert hits == 6


def test_uniform_logits_give_log_vocab_per_token():
    hidden = torch.zeros(5, 4)
    weight = torch.randn(8, 4)
    loss = linear_cross_entropy(hidden, weight, torch.arange(5))
    assert loss.item() == pytest.approx(5 * torch.log(torch.tensor(8.0)).item())


def test_no_targets_gives_zero_loss_with_a_graph():
    hidden = torch.zeros(0, 4, requires_grad=True)
    loss = linear_cross_entropy(hidden, torch.randn(8, 4), torch.zeros(0, dtype=torch.long))
    assert loss.item() == 0.0 and loss.requires_grad


class MatmulDtypes(TorchDispatchMode):
    """Records the dtypes of the matrix multiplications that actually run (below autocast)."""

    MATMULS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default}

    def __init__(self) -> None:
        super().__init__()
        self.dtypes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.MATMULS:
            self.dtypes.append(args[-1].dtype)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("loss_fn", [linear_cross_entropy, linear_token_log_probs])
def test_the_head_matmuls_follow_autocast_whatever_the_weights_dtype(loss_fn):
    """An fp32 head (full fine-tuning's master weights) under bf16 autocast: every matmul of the
    loss, forward and backward, runs in bf16; the gradients come back in fp32; the value equals the
    loss of the same inputs rounded to bf16 (so no fp32 GEMM is hiding in it)."""
    torch.manual_seed(0)
    hidden = torch.randn(19, 16, requires_grad=True)
    weight = torch.randn(40, 16, requires_grad=loss_fn is linear_cross_entropy)
    targets = torch.randint(0, 40, (19,))
    assert head_matmul_dtype("cpu", torch.float32) == torch.float32
    with MatmulDtypes() as seen, torch.autocast("cpu", dtype=torch.bfloat16):
        assert head_matmul_dtype("cpu", torch.float32) == torch.bfloat16
        loss = loss_fn(hidden, weight, targets, 8).sum()
        loss.backward()
    assert seen.dtypes and set(seen.dtypes) == {torch.bfloat16}
    assert hidden.grad.dtype == torch.float32 and (weight.grad is None or weight.grad.dtype == torch.float32)
    rounded = loss_fn(hidden.detach().bfloat16(), weight.detach().bfloat16(), targets, 8).sum()
    assert loss.item() == rounded.item()
    assert loss.item() != loss_fn(hidden.detach(), weight.detach(), targets, 8).sum().item()
