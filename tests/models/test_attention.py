"""Segment attention's dispatch: which kernel packed rows take, and in which dtype."""

import pytest
import torch

from hone.models.attention import segment_attention, segment_bounds, segment_path

BF16, FP16, FP32 = torch.bfloat16, torch.float16, torch.float32


@pytest.mark.parametrize("device, q_dtype, autocast_dtype, varlen, expected", [
    # full fine-tuning on a GPU: fp32 master weights, the rotary embedding hands over fp32 queries
    ("cuda", FP32, BF16, True, ("varlen", BF16)),
    ("cuda", FP32, FP16, True, ("varlen", FP16)),
    ("cuda", BF16, BF16, True, ("varlen", BF16)),  # LoRA: frozen bf16 weights
    ("cuda", BF16, None, True, ("varlen", BF16)),
    ("cuda", FP32, None, True, ("per segment", FP32)),  # an fp32 run: the flash kernel takes no fp32
    ("cuda", FP32, BF16, False, ("per segment", BF16)),  # no variable-length kernel (or dropout)
    ("cpu", FP32, BF16, True, ("per segment", BF16)),
    ("cpu", FP32, None, True, ("per segment", FP32)),
])
def test_segment_path_follows_autocast_not_the_queries_dtype(device, q_dtype, autocast_dtype, varlen, expected):
    assert segment_path(device, q_dtype, autocast_dtype, varlen) == expected


def test_fp32_queries_under_autocast_attend_in_autocasts_dtype():
    """On the CPU under bf16 autocast, fp32 queries/keys/values (as an fp32 rotary embedding gives
    them) attend in bf16: the same output as bf16 inputs, not the fp32 result."""
    g = torch.Generator().manual_seed(0)
    query = torch.randn(1, 4, 12, 8, generator=g)
    key, value = torch.randn(1, 2, 12, 8, generator=g), torch.randn(1, 2, 12, 8, generator=g)
    bounds = segment_bounds(torch.tensor([[1] * 5 + [2] * 7]))
    module = torch.nn.Module().eval()
    with torch.autocast("cpu", dtype=BF16):
        out, _ = segment_attention(module, query, key, value, None, hone_segments=bounds)
    rounded, _ = segment_attention(module, query.to(BF16), key.to(BF16), value.to(BF16), None, hone_segments=bounds)
    full, _ = segment_attention(module, query, key, value, None, hone_segments=bounds)
    assert out.dtype == BF16 and full.dtype == FP32
    torch.testing.assert_close(out, rounded, atol=0, rtol=0)
    assert not torch.equal(out.float(), full)
