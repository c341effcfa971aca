"""Device and precision settings: activation checkpointing changes no gradient, fp16 trains through
its gradient scaler, and asking for a GPU that is not there is a clear error."""

import json

import pytest
import torch

from hone.data.pack import collate
from hone.data.template import TokenizedExample
from hone.errors import ConfigError
from hone.methods import lora
from hone.models.attention import use_segment_attention
from hone.models.tiny import tiny_model
from hone.objectives.sft import SFT
from hone.train.distributed import Runtime, decoder_layers


def _examples(vocab: int, lengths=(9, 14, 6)):
    g = torch.Generator().manual_seed(1)
    out = []
    for n in lengths:
        ids = torch.randint(3, vocab, (n,), generator=g).tolist()
        out.append(TokenizedExample(ids, [-100] * 3 + ids[3:], f"ex{n}"))
    return out


def _grads(tokenizer, checkpointing: bool, segmented: bool):
    """LoRA gradients of one packed batch, and how often each decoder layer's attention ran."""
    torch.manual_seed(0)
    model = tiny_model(tokenizer)
    if segmented:
        assert use_segment_attention(model)
    model = lora.apply(model, lora.Config(rank=4))
    with torch.no_grad():  # a nonzero B so every LoRA matrix gets a gradient
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    runtime = Runtime(torch.device("cpu"), "fp32")
    objective = runtime.wrap(model, SFT(chunk_tokens=8), checkpointing=checkpointing)
    calls = []
    for layer in decoder_layers(model):
        layer.self_attn.register_forward_hook(lambda *a: calls.append(1))
    model.train()
    examples = _examples(len(tokenizer))
    batch = collate(examples, [[0, 1, 2]], tokenizer.pad_token_id, mask=not segmented)
    loss, _ = objective.loss(model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.item(), grads, len(calls)


@pytest.mark.parametrize("segmented", [True, False], ids=["segment-attention", "dense-mask"])
def test_gradient_checkpointing_gives_the_same_gradients(tiny_tokenizer, segmented):
    loss, grads, calls = _grads(tiny_tokenizer, checkpointing=False, segmented=segmented)
    loss_ckpt, grads_ckpt, calls_ckpt = _grads(tiny_tokenizer, checkpointing=True, segmented=segmented)
    assert calls == 2 and calls_ckpt == 4  # each layer recomputed once in backward
    assert loss_ckpt == pytest.approx(loss, abs=1e-6)
    assert grads.keys() == grads_ckpt.keys() and len(grads) == 2 * 7 * 2  # A and B of 7 linears, 2 layers
    for name in grads:
        assert grads[name].abs().sum() > 0, name
        torch.testing.assert_close(grads_ckpt[name], grads[name], atol=1e-6, rtol=1e-5)


def test_fp16_trains_through_the_gradient_scaler(train_tiny):
    """fp16 autocast on the CPU: losses and (unscaled) gradient norms follow fp32's; the scaler's
    state is checkpointed."""
    fp32 = train_tiny("train.max_steps=3", "train.batch_size=4", name="fp32")
    fp16 = train_tiny("train.max_steps=3", "train.batch_size=4", "train.precision=fp16",
                       "train.save_every=3", name="fp16")
    steps = [[r for r in map(json.loads, open(run.run_dir / "metrics.jsonl")) if "loss" in r] for run in (fp32, fp16)]
    for a, b in zip(*steps):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-3)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=2e-2)  # scaled by 2**16 if never unscaled
    saved = torch.load(fp16.run_dir / "checkpoints" / "step-3" / "optimizer.pt", weights_only=False)
    assert saved["scaler"]["scale"] == 2.0**16
    assert steps[1][-1]["loss"] < steps[1][0]["loss"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_a_config_error(train_tiny):
    with pytest.raises(ConfigError, match="train.device"):
        train_tiny("train.max_steps=1", "train.device=cuda")


def test_segment_offsets_for_varlen_kernels():
    """Two rows of 6 flattened into 12 tokens: every segment (padding included) becomes one sequence."""
    from hone.models.attention import segment_bounds

    bounds = segment_bounds(torch.tensor([[1, 1, 2, 2, 2, 0], [1, 1, 1, 1, 2, 2]]))
    assert bounds == [[(0, 2), (2, 5), (5, 6)], [(0, 4), (4, 6)]]
    offsets, longest = bounds.cu_seqlens("cpu")
    assert offsets.tolist() == [0, 2, 5, 6, 10, 12] and offsets.dtype == torch.int32 and longest == 4


def _per_segment(q, k, v, cu, scale, gqa):
    """Reference varlen kernel: causal SDPA over each segment of (tokens, heads, dim) tensors."""
    out = []
    for s, e in zip(cu[:-1].tolist(), cu[1:].tolist()):
        qs, ks, vs = (t[s:e].transpose(0, 1) for t in (q, k, v))
        out.append(torch.nn.functional.scaled_dot_product_attention(
            qs, ks, vs, is_causal=True, scale=scale, enable_gqa=gqa).transpose(0, 1))
    return torch.cat(out)


def varlen_with_gqa(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
                    window_size=(-1, -1), enable_gqa=False):
    assert window_size == (-1, 0) and (enable_gqa or key.shape[1] == query.shape[1])
    return _per_segment(query, key, value, cu_seq_q, scale, enable_gqa)


def varlen_with_window(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
                       window_size=(-1, -1)):
    assert window_size == (-1, 0) and key.shape[1] == query.shape[1]
    return _per_segment(query, key, value, cu_seq_q, scale, False)


def varlen_with_is_causal(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, is_causal=False, return_aux=None):
    assert is_causal and key.shape[1] == query.shape[1]
    return _per_segment(query, key, value, cu_seq_q, None, False)


@pytest.mark.parametrize("varlen_attn", [varlen_with_gqa, varlen_with_window, varlen_with_is_causal])
def test_varlen_call_fits_each_signature_of_torchs_kernel(varlen_attn):
    """hone's varlen path, given a kernel of each of the signatures torch's `varlen_attn` has had
    (causal as window_size or is_causal, with or without enable_gqa and scale), gives what per-segment
    SDPA gives: grouped-query heads repeated in the right order, the scale folded in where needed."""
    from hone.models.attention import _varlen_attention, segment_attention, segment_bounds, torch_varlen

    g = torch.Generator().manual_seed(0)
    query = torch.randn(2, 4, 12, 8, generator=g)
    key, value = torch.randn(2, 2, 12, 8, generator=g), torch.randn(2, 2, 12, 8, generator=g)
    bounds = segment_bounds(torch.tensor([[1] * 5 + [2] * 7, [1] * 3 + [2] * 4 + [3] * 5]))
    expected, _ = segment_attention(torch.nn.Module(), query, key, value, None, scaling=0.3, hone_segments=bounds)
    got = _varlen_attention(("torch", torch_varlen(varlen_attn)), query, key, value, bounds, 0.3)
    assert got.shape == expected.shape == (2, 12, 4, 8)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got[:, :, 0], got[:, :, 1])  # query heads differ; their order is checked
