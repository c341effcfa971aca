import pytest
import torch

from hone.objectives.losses import linear_cross_entropy


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


def test_uniform_logits_give_log_vocab_per_token():
    hidden = torch.zeros(5, 4)
    weight = torch.randn(8, 4)
    loss = linear_cross_entropy(hidden, weight, torch.arange(5))
    assert loss.item() == pytest.approx(5 * torch.log(torch.tensor(8.0)).item())


def test_no_targets_gives_zero_loss_with_a_graph():
    hidden = torch.zeros(0, 4, requires_grad=True)
    loss = linear_cross_entropy(hidden, torch.randn(8, 4), torch.zeros(0, dtype=torch.long))
    assert loss.item() == 0.0 and loss.requires_grad
