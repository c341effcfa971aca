"""The fused LoRA forward computes what PEFT's own forward computes, values and gradients."""

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model

from hone.methods.fused_lora import FusedLoraLinear, fuse
from hone.models.tiny import tiny_model, tiny_tokenizer


def lora_pair(**options):
    """The same LoRA model twice: PEFT's forward, and the fused one; B is non-zero so the update counts."""
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", **options)
    peft_model = get_peft_model(tiny_model(tiny_tokenizer()), config)
    torch.manual_seed(1)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(std=0.1)
    fused = copy.deepcopy(peft_model)
    return peft_model, fused, fuse(fused)


def loss_and_grads(model, ids, autocast: bool):
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits = model(input_ids=ids).logits
    loss = logits.float().logsumexp(-1).mean()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return logits.detach().float(), grads


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_fused_forward_and_gradients_equal_peft(autocast):
    peft_model, fused, count = lora_pair()
    assert count == 14  # 7 linear layers in each of 2 blocks
    ids = torch.randint(0, 200, (2, 24))
    ref_logits, ref_grads = loss_and_grads(peft_model, ids, autocast)
    logits, grads = loss_and_grads(fused, ids, autocast)
    tol = dict(atol=5e-2, rtol=5e-2) if autocast else dict(atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(logits, ref_logits, **tol)
    assert grads.keys() == ref_grads.keys() and len(grads) == 28
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], **tol, msg=name)


def test_fused_path_steps_aside_where_it_does_not_apply():
    peft_model, fused, _ = lora_pair()
    ids = torch.randint(0, 200, (1, 16))
    layer = next(m for m in fused.modules() if isinstance(m, FusedLoraLinear))
    assert layer._fused_adapter() == "default"
    with fused.disable_adapter(), peft_model.disable_adapter():
        assert layer._fused_adapter() is None
        torch.testing.assert_close(fused(input_ids=ids).logits, peft_model(input_ids=ids).logits)
    _, dropout_model, _ = lora_pair(lora_dropout=0.1)
    assert next(m for m in dropout_model.modules() if isinstance(m, FusedLoraLinear))._fused_adapter() is None
    _, dora_model, _ = lora_pair(use_dora=True)
    assert next(m for m in dora_model.modules() if isinstance(m, FusedLoraLinear))._fused_adapter() is None


def test_a_fused_model_saves_peft_files_unchanged(tmp_path):
    peft_model, fused, _ = lora_pair()
    peft_model.save_pretrained(tmp_path / "peft")
    fused.save_pretrained(tmp_path / "fused")
    assert (tmp_path / "peft" / "adapter_model.safetensors").read_bytes() == \
        (tmp_path / "fused" / "adapter_model.safetensors").read_bytes()
