import pytest
import torch

from hone.objectives.losses import linear_cross_entropy, linear_cross_entropy_and_hits


@pytest.mark.parametrize("chunk", [1, 7, 64])
@pytest.mark.parametrize("weight_trains", [False, True])
def test_linear_cross_entropy_matches_plain_cross_entropy(chunk, weight_trains):
    torch.manual_seed(0)
    hidden = torch.randn(23, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(40, 16, dtype=torch.float64, requires_grad=weight_trains)
    targets = torch.randint(0, 40, (23,))
    loss = linear_cross_entropy(hidden, weight, targets, chunk)
    grads = torch.autograd.grad(loss * 3.0, [hidden, weight] if weight_trains else [hidden])

    ref = torch.nn.functional.cross_entropy(hidden @ weight.T, targets, reduction="sum")
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
