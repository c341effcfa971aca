"""Training FLOPs come from the layers' logical shapes, so a 4-bit base counts as much as a bf16 one."""

import torch

from hone.methods import lora, qlora
from hone.models.flops import linear_weights, training_flops
from hone.models.tiny import tiny_model


def test_a_4bit_layer_counts_its_logical_shape(tiny_tokenizer):
    plain = lora.apply(tiny_model(tiny_tokenizer), lora.Config(rank=4))
    quantized = qlora.apply(tiny_model(tiny_tokenizer), qlora.Config(rank=4))
    packed = [p for n, p in quantized.named_parameters() if "q_proj.base_layer.weight" in n][0]
    assert packed.numel() * 2 == 64 * 64  # two 4-bit values per stored byte
    shapes = [(64, 64), (64, 32), (64, 32), (64, 64), (64, 128), (64, 128), (128, 64)]  # q k v o gate up down
    base = 2 * sum(i * o for i, o in shapes) + 64 * len(tiny_tokenizer)  # 2 layers and the output head
    adapters = 2 * sum(4 * (i + o) for i, o in shapes)  # rank 4: A (in x 4) and B (4 x out)
    assert linear_weights(plain) == base + adapters
    assert linear_weights(quantized) == linear_weights(plain)
    assert linear_weights(quantized, trained=True) == linear_weights(plain, trained=True) == adapters


def test_training_flops_add_weight_gradients_and_causal_attention(tiny_tokenizer):
    model = tiny_model(tiny_tokenizer)
    model.requires_grad_(False)
    frozen = training_flops(model, 10, [6, 4], hidden=64, layers=2)
    model.requires_grad_(True)
    full = training_flops(model, 10, [6, 4], hidden=64, layers=2)
    weights = linear_weights(model)
    assert frozen == 10 * 4 * weights + 6 * 64 * 2 * (36 + 16)
    assert full - frozen == 10 * 2 * weights
    assert torch.nn.Linear in {type(m) for m in model.modules()}
