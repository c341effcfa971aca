"""The training loop end to end on a tiny model: what trains, what is written, what loads back."""

import json

import pytest
import torch
from safetensors.torch import load_file

from hone.api import generate
from hone.methods.tuned import load_for_inference
from hone.models.artifact import read_manifest
from hone.models.load import load_model


def records(run_dir, key="loss"):
    return [r for r in map(json.loads, open(run_dir / "metrics.jsonl")) if key in r]


def test_train_save_load_generate(train_tiny, tiny_model_dir):
    result = train_tiny("train.max_steps=12", "train.eval_every=6", "train.batch_size=4")
    steps = records(result.run_dir)
    assert [r["step"] for r in steps] == list(range(1, 13))
    assert steps[-1]["loss"] < steps[0]["loss"]
    evals = records(result.run_dir, "val_loss")
    assert [r["step"] for r in evals] == [6, 12] and evals[1]["val_loss"] < evals[0]["val_loss"]

    files = sorted(p.name for p in result.adapter_dir.iterdir())
    assert {"adapter_config.json", "adapter_model.safetensors", "hone.json"} <= set(files)
    manifest = read_manifest(result.adapter_dir)
    assert manifest["base_model"]["id"] == str(tiny_model_dir)
    assert len(manifest["base_model"]["sha256"]) == 64
    assert manifest["method"]["type"] == "lora" and manifest["objective"]["type"] == "sft"
    assert "<|im_start|>" in manifest["chat_template"]
    assert manifest["metrics"]["steps"] == 12

    # Only LoRA weights were saved, and they moved away from PEFT's zero-initialised B.
    saved = load_file(result.adapter_dir / "adapter_model.safetensors")
    assert saved and all("lora_" in name for name in saved)
    assert any(t.abs().sum() > 0 for n, t in saved.items() if "lora_B" in n)

    # The frozen base is untouched and base + adapter differs from the base.
    base, tokenizer, _ = load_model(str(tiny_model_dir))
    tuned, _ = load_for_inference(adapter=result.run_dir)
    ids = torch.tensor([tokenizer.encode("Order a large pizza")])
    with torch.no_grad():
        base_logits = base(ids).logits
        tuned_logits = tuned(ids).logits
        with tuned.disable_adapter():
            assert torch.allclose(tuned(ids).logits, base_logits)
    assert not torch.allclose(tuned_logits, base_logits)

    text = generate("Order a large pizza", adapter=result.run_dir, max_new_tokens=8)
    assert isinstance(text, str)
    sampled = generate([[{"role": "user", "content": "hi"}]] * 2, adapter=result.run_dir, max_new_tokens=5,
                       temperature=1.0, seed=3)
    assert len(sampled) == 2


def test_gradient_accumulation_matches_one_big_batch(train_tiny):
    """8 examples in one micro-batch == 2 micro-batches of 4: same loss, same trained weights."""
    one = train_tiny("train.batch_size=8", "train.max_steps=2", name="one")
    two = train_tiny("train.batch_size=4", "train.grad_accum=2", "train.max_steps=2", name="two")
    for a, b in zip(records(one.run_dir), records(two.run_dir)):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a["targets"] == b["targets"]
    wa = load_file(one.adapter_dir / "adapter_model.safetensors")
    wb = load_file(two.adapter_dir / "adapter_model.safetensors")
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=1e-5, rtol=1e-4)


def test_packing_does_not_change_the_loss(train_tiny):
    packed = train_tiny("train.max_steps=2", "data.packing=true", name="packed")
    padded = train_tiny("train.max_steps=2", "data.packing=false", name="padded")
    for a, b in zip(records(packed.run_dir), records(padded.run_dir)):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)


def test_trainable_parameters_change_and_frozen_ones_do_not(tiny_model_dir, pizza_files):
    from hone.config.load import load_config
    from hone.data.pack import collate
    from hone.data.prepare import prepare_data
    from hone.methods import method_for
    from hone.objectives import build_objective

    config = load_config(None, [f"model={tiny_model_dir}", f"data.train={pizza_files[0]}"])
    model, tokenizer, _ = load_model(str(tiny_model_dir))
    model = method_for("lora").apply(model, config.method)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    data = prepare_data(config.data, tokenizer, seed=0)
    batch = collate(data.train[:4], None, tokenizer.pad_token_id)
    objective = build_objective(config.objective)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(2):  # LoRA B starts at zero, so A only moves from the second step
        loss, _ = objective.loss(model, batch)
        (loss / objective.units(batch)).backward()
        optimizer.step()
        optimizer.zero_grad()
    for name, p in model.named_parameters():
        changed = not torch.equal(before[name], p.detach())
        assert changed == p.requires_grad, name
        assert p.requires_grad == ("lora_" in name), name


def test_bf16_precision_trains_close_to_fp32(train_tiny):
    fp32 = train_tiny("train.max_steps=2", name="fp32")
    bf16 = train_tiny("train.max_steps=2", "train.precision=bf16", name="bf16")
    for a, b in zip(records(fp32.run_dir), records(bf16.run_dir)):
        assert a["loss"] == pytest.approx(b["loss"], rel=2e-2)


def test_a_second_run_with_the_same_name_is_refused(train_tiny):
    from hone.errors import ConfigError

    train_tiny("train.max_steps=1", name="same")
    with pytest.raises(ConfigError, match="--resume"):
        train_tiny("train.max_steps=1", name="same")


def test_lenient_data_skips_bad_lines_and_says_how_many(tmp_path, tiny_model_dir, pizza_files):
    from hone.api import train

    good = open(pizza_files[0]).read().splitlines()[:12]
    data = tmp_path / "mixed.jsonl"
    data.write_text("\n".join(good[:6] + ["{broken", '{"messages": []}'] + good[6:]) + "\n")
    said = []
    result = train(None, [f"model={tiny_model_dir}", f"data.train={data}", f"output_dir={tmp_path}", "name=lenient",
                          "data.strict=false", "train.max_steps=1", "train.threads=1"],
                   progress=False, log=said.append)
    assert any("skipped 2 invalid lines" in line and f"{data}:7" in line for line in said)
    assert result.steps == 1
