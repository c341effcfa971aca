"""Fused kernels: which ones a run takes (`train.kernels`), and that the compiled path trains to the
eager path's losses and gradients within bf16 rounding."""

import importlib.util

import pytest
import torch

from hone.data.pack import collate
from hone.errors import ConfigError
from hone.methods import lora
from hone.models.attention import use_segment_attention
from hone.models.tiny import tiny_model
from hone.objectives.sft import SFT
from hone.train.distributed import Runtime
from hone.train.kernels import FusedRotary, compile_layers, liger_problem, resolve_kernels, use_kernels
from tests.train.test_device import _examples


@pytest.mark.parametrize("choice, device, model_type, liger, expected", [
    ("auto", "cpu", "llama", True, "none"),  # the CPU path stays eager
    ("auto", "cuda", "llama", True, "liger"),
    ("auto", "cuda", "qwen2", True, "liger"),
    ("auto", "cuda", "llama", False, "compile"),  # no Liger Kernel installed
    ("auto", "cuda", "gpt2", True, "compile"),  # an architecture Liger is not wired for here
    ("compile", "cpu", "llama", False, "compile"),
    ("none", "cuda", "llama", True, "none"),
    ("liger", "cuda", "mistral", True, "liger"),
])
def test_auto_picks_the_fused_path_on_cuda_only(choice, device, model_type, liger, expected):
    assert resolve_kernels(choice, device, model_type, liger_ready=liger) == expected


@pytest.mark.parametrize("device, model_type, liger, says", [
    ("cpu", "llama", True, "CUDA"), ("cuda", "llama", False, "liger"), ("cuda", "gpt2", True, "gpt2")])
def test_liger_where_it_cannot_run_is_a_config_error(device, model_type, liger, says):
    with pytest.raises(ConfigError, match=says) as caught:
        resolve_kernels("liger", device, model_type, liger_ready=liger)
    assert caught.value.where == "train.kernels" and caught.value.hint


@pytest.mark.skipif(importlib.util.find_spec("liger_kernel") is not None, reason="Liger Kernel is installed here")
def test_without_liger_kernel_auto_compiles_on_cuda():
    assert "pip install liger-kernel" in liger_problem()
    assert resolve_kernels("auto", "cuda", "llama") == "compile"
    assert resolve_kernels("auto", "cpu", "llama") == "none"


def test_fused_rotary_keeps_cpu_tensors_on_the_plain_function():
    calls = []
    rotary = FusedRotary(lambda q, k, cos, sin: calls.append("plain") or (q, k),
                         lambda q, k, cos, sin: calls.append("fused") or (q, k))
    q = torch.zeros(1, 2, 3, 4)
    rotary(q, q, q, q)
    assert calls == ["plain"]


def _step(tokenizer, backend: str | None):
    """Loss and LoRA gradients of one packed bf16 batch, its layers compiled with `backend` (or eager)."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = tiny_model(tokenizer, layers=1)
    assert use_segment_attention(model)
    model = lora.apply(model, lora.Config(rank=4))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    runtime = Runtime(torch.device("cpu"), "bf16")
    objective = runtime.wrap(model, SFT(chunk_tokens=16))
    compiled = compile_layers(model, backend) if backend else 0
    model.train()
    batch = collate(_examples(len(tokenizer), lengths=(17, 30, 11)), [[0, 1, 2]], tokenizer.pad_token_id, mask=False)
    with runtime.autocast():
        loss, _ = objective.loss(model, batch)
    loss.backward()
    grads = {n: p.grad.float() for n, p in model.named_parameters() if p.requires_grad}
    return loss.item(), grads, compiled


def test_compiled_layers_train_like_eager_ones_within_bf16_rounding(tiny_tokenizer):
    """The regions `train.kernels=compile` compiles (norms and MLPs with their fused LoRA layers), traced
    and differentiated by torch.compile (the aot_eager backend: inductor's code generation would take
    a minute on a CPU; bench/gpu.py compares inductor's losses on the GPU)."""
    loss, grads, _ = _step(tiny_tokenizer, None)
    fused_loss, fused_grads, compiled = _step(tiny_tokenizer, "aot_eager")
    assert compiled == 3  # the layer's two norms and its MLP
    assert fused_loss == pytest.approx(loss, rel=1e-2)
    assert grads.keys() == fused_grads.keys()
    for name in grads:
        assert grads[name].abs().sum() > 0, name
        torch.testing.assert_close(fused_grads[name], grads[name], atol=2e-2 * grads[name].abs().max().item(), rtol=5e-2)


def test_use_kernels_says_what_it_fused(tiny_tokenizer):
    model = tiny_model(tiny_tokenizer)
    assert use_kernels(model, "none") == "kernels: none (eager)"


@pytest.mark.skipif(liger_problem() is not None, reason="Liger Kernel (and Triton) not installed")
def test_liger_binds_to_this_models_modules_and_leaves_cpu_tensors_eager(tiny_tokenizer):
    import transformers.models.llama.modeling_llama as llama

    torch.manual_seed(0)
    model = lora.apply(tiny_model(tiny_tokenizer), lora.Config(rank=4))
    ids = torch.randint(3, 100, (1, 12))
    before = model(input_ids=ids).logits
    assert use_kernels(model, "liger") == "kernels: liger (5 RMSNorms, 2 SwiGLU MLPs, rotary embedding fused)"
    assert isinstance(llama.apply_rotary_pos_emb, FusedRotary)
    assert torch.equal(model(input_ids=ids).logits, before)
    other = tiny_model(tiny_tokenizer)  # another model of the process keeps its own forwards
    assert "forward" not in vars(other.model.norm)
