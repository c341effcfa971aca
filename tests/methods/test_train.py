"""Each method on the tiny model: the loss falls, exactly the intended tensors train, the rest stay
bit-identical, and hone's generation runs on the result."""

import hashlib

import pytest
import torch

from hone.models.generate import generate_batch
from tests.methods.conftest import CASES, LR, train_steps


def checksums(model) -> dict[str, str]:
    out = {}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        # a 4-bit NF4 weight (torchao) is checked by its inner tensors: packed data and scales
        parts = ([getattr(tensor, n) for n in tensor.__tensor_flatten__()[0]]
                 if hasattr(tensor, "__tensor_flatten__") else [tensor])
        digest = hashlib.sha256()
        for part in parts:
            digest.update(part.detach().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
        out[name] = digest.hexdigest()
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_loss_falls_and_only_the_intended_tensors_change(tuned, case):
    t = tuned(case)
    _, intended = CASES[case]
    trainable = {n for n, p in t.model.named_parameters() if p.requires_grad}
    assert trainable and all(intended(n) for n in trainable), sorted(trainable)[:5]
    assert all(not intended(n) for n, p in t.model.named_parameters() if not p.requires_grad)
    before = checksums(t.model)
    losses = train_steps(t, 6, LR.get(case, 1e-2))
    assert losses[-1] < losses[0] - 0.01, losses
    after = checksums(t.model)
    assert before.keys() == after.keys()
    changed = {n for n in before if before[n] != after[n]}
    assert changed == trainable


@pytest.mark.parametrize("case", ["qlora", "adapters", "prompt_tuning", "prefix_tuning", "ia3"])
def test_hone_generation_runs_on_the_tuned_model(tuned, case):
    t = tuned(case)
    system = {"role": "system", "content": "You are a helpful assistant. Answer the question in one word. " * 2}
    prompts = [[system, {"role": "user", "content": q}] for q in ("Order a pizza", "1 2 3")]
    out = generate_batch(t.model, t.tokenizer, prompts, max_new_tokens=4)
    assert len(out) == 2 and all(isinstance(o, str) for o in out)
    assert generate_batch(t.model, t.tokenizer, prompts, max_new_tokens=4, batch_size=1) == out


@pytest.mark.parametrize("case", ["prompt_tuning", "prefix_tuning"])
def test_virtual_tokens_on_hones_path_equal_pefts_own_forward(tuned, case):
    """hone computes prompt/prefix tuning as a learned KV prefix; PEFT concatenates inside its forward."""
    from tests.methods.conftest import head_logits

    t = tuned(case)
    train_steps(t, 2, 0.1)
    one = {k: (v[:1] if torch.is_tensor(v) and v.dim() == 2 else v) for k, v in t.batch.items()}
    length = int((one["segment_ids"][0] > 0).sum())
    ids = one["input_ids"][:, :length]
    with torch.no_grad():
        peft_logits = t.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -length:]
    t.batch = {**one, "segments": t.batch["segments"][:1]}
    ours = head_logits(t)[:, :length]
    torch.testing.assert_close(ours, peft_logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("case", ["prompt_tuning", "prefix_tuning"])
def test_virtual_token_generation_equals_a_plain_greedy_loop_through_peft(tuned, case):
    """hone's batched, cached decoding from the learned prefix (with a shared system prompt prefilled
    on top of it) picks what PEFT's own forward picks, token by token, for every prompt."""
    from hone.data.template import prompt_ids
    from hone.models.generate import stop_token_ids

    t = tuned(case)
    train_steps(t, 2, 0.1)
    base = t.model.get_base_model()
    # A random untied head makes greedy text wander through the vocabulary, so outputs can differ.
    head = torch.randn(base.lm_head.weight.shape, generator=torch.Generator().manual_seed(0))
    head[t.tokenizer.eos_token_id] = 0.0
    base.lm_head.weight = torch.nn.Parameter(head, requires_grad=False)
    system = {"role": "system", "content": "You are a helpful assistant. Answer the question in one word. " * 2}
    prompts = [[system, {"role": "user", "content": q}] for q in ("Order a pizza", "1 2 3", "The quick fox")]
    stop = stop_token_ids(t.model, t.tokenizer)
    expected = []
    for messages in prompts:
        ids, new = prompt_ids(messages, t.tokenizer), []
        for _ in range(6):
            with torch.no_grad():
                x = torch.tensor([ids + new])
                token = int(t.model(input_ids=x, attention_mask=torch.ones_like(x)).logits[0, -1].argmax())
            if token in stop:
                break
            new.append(token)
        expected.append(t.tokenizer.decode(new, skip_special_tokens=True).strip())
    assert any(expected)
    assert generate_batch(t.model, t.tokenizer, prompts, max_new_tokens=6, batch_size=2) == expected


def test_qlora_quantizes_every_block_linear_to_nf4_and_reports_the_memory(tuned):
    import bitsandbytes as bnb

    from hone.methods import qlora

    t = tuned("qlora")
    quantized = [m for m in t.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(quantized) == 2 * 7  # q, k, v, o, gate, up, down in each of 2 blocks; not the head
    assert all(m.weight.quant_state.quant_type == "nf4" for m in quantized)
    report = t.model.hone_quantization
    linear_params = sum(m.in_features * m.out_features for m in quantized)
    saved = report["before_bytes"] - report["after_bytes"]
    assert 3.5 * linear_params * 0.9 < saved < 3.5 * linear_params  # fp32 -> 4 bits, less the block scales
    assert "MiB ->" in qlora.describe(t.model)


def test_qlora_with_torchao_holds_each_block_linear_as_an_nf4_tensor(tuned):
    from torchao.quantization.quantize_.workflows.nf4.nf4_tensor import NF4Tensor

    from hone.methods import qlora

    t = tuned("qlora_torchao")
    assert t.config.method.quantizer == "torchao"
    quantized = {n: m for n, m in t.model.named_modules()
                 if type(m) is torch.nn.Linear and isinstance(m.weight, NF4Tensor)}
    assert len(quantized) == 2 * 7 and all(n.endswith("base_layer") for n in quantized)  # not the head
    report = t.model.hone_quantization
    linear_params = sum(m.in_features * m.out_features for m in quantized.values())
    saved = report["before_bytes"] - report["after_bytes"]
    assert 3.5 * linear_params * 0.9 < saved < 3.5 * linear_params
    assert "(torchao)" in qlora.describe(t.model)
