"""A LoRA method with `train_vision_tower=full` / `train_projector=full`: those parts train whole beside
the language model's LoRA, are saved inside the adapter, reload to the same logits, merge, and are
served merged (never side by side with other adapters on the one base)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from hone.config.load import load_config
from hone.errors import ConfigError, ModelError
from hone.export.merge import merge_artifact
from hone.infer.engine import Engine
from hone.methods import method_for
from hone.methods.tuned import load_tuned
from hone.methods.vision import whole_parts
from hone.models.load import load_model
from hone.models.vision import load_processor, module_part
from tests.vision.conftest import shape_picture
from tests.vision.test_train import ask, losses, run

WHOLE = ("method.train_vision_tower=full", "method.train_projector=full")


def method_config(kind, *overrides):
    return load_config(None, [f"method.type={kind}", *overrides, *(["method.rank=4"] if kind != "full" else [])]).method


def inputs(model_dir):
    """A picture question as the model's processor encodes it (ids, mask and pixels)."""
    processor = load_processor(model_dir)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    return dict(processor(text=text, images=[shape_picture("red", 5)], return_tensors="pt"))


def logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def nudged(model):
    """The trainable weights moved (as a training step would move them), deterministically."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model


def test_the_tower_and_projector_train_whole_and_the_language_model_through_lora(vlm_dirs):
    base, _, _ = load_model(str(vlm_dirs("smolvlm")))
    model = method_for("lora").apply(base, method_config("lora", *WHOLE))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    tower = {n for n in trainable if module_part(n) == "vision_tower"}
    assert tower and all(".modules_to_save.default." in n for n in tower)  # every weight of its trained copy
    assert {module_part(n) for n in trainable} == {"language_model", "projector", "vision_tower"}
    assert all("lora_" in n for n in trainable if module_part(n) == "language_model")
    assert not any("lora_" in n for n in trainable if module_part(n) != "language_model")
    assert any(module_part(n) == "language_model" and "base_layer" in n for n in frozen)


def test_training_moves_the_tower_not_the_language_model_and_the_adapter_merges(tmp_path, vlm_dirs, colour_files):
    base_dir = vlm_dirs("smolvlm")
    result = run(tmp_path, base_dir, colour_files[0], *WHOLE)
    trace = losses(result)
    assert trace[-1] < trace[0] - 0.1, trace
    saved = load_file(result.adapter_dir / "adapter_model.safetensors")
    base, tokenizer, _ = load_model(str(base_dir))
    weights = dict(base.named_parameters())
    whole = {n: t for n, t in saved.items() if "lora_" not in n}
    assert {module_part(n) for n in whole} == {"projector", "vision_tower"}
    assert all(module_part(n) == "language_model" for n in saved if "lora_" in n)
    moved = [n for n, t in whole.items() if not torch.equal(t, weights[n.removeprefix("base_model.model.")])]
    assert any(module_part(n) == "vision_tower" for n in moved), "the tower's weights did not change"
    model, tokenizer, manifest = load_tuned(result.adapter_dir)
    assert manifest["method"]["train_vision_tower"] == "full"
    for name, parameter in model.get_base_model().named_parameters():  # the base's own language model is intact
        if module_part(name) == "language_model" and "lora_" not in name:
            torch.testing.assert_close(parameter, weights[name.replace(".base_layer", "")], rtol=0, atol=0)
    answer = ask(model, tokenizer)
    merge_artifact(result.run_dir, tmp_path / "merged")
    merged, merged_tokenizer, _ = load_model(str(tmp_path / "merged"))
    assert ask(merged, merged_tokenizer) == answer


@pytest.mark.parametrize("method", ["lora", "dora", "qlora"])
def test_save_then_reload_gives_the_same_logits_and_the_merge_too(tmp_path, vlm_dirs, method):
    base_dir = vlm_dirs("smolvlm")
    kind = "lora" if method == "dora" else method
    config = method_config(kind, *WHOLE, *(["method.dora=true"] if method == "dora" else []))
    batch = inputs(base_dir)
    trained = nudged(method_for(kind).apply(load_model(str(base_dir))[0], config))
    expected = logits(trained, batch)
    method_for(kind).save(trained, tmp_path)
    (tmp_path / "hone.json").write_text(json.dumps({"method": config.model_dump()}))
    reloaded = method_for(kind).load(load_model(str(base_dir))[0], tmp_path)
    torch.testing.assert_close(logits(reloaded, batch), expected, rtol=0, atol=0)
    untouched = logits(load_model(str(base_dir))[0], batch)
    assert not torch.allclose(expected, untouched, atol=1e-3)
    merged = method_for(kind).merge(reloaded)
    assert not any("modules_to_save" in name for name, _ in merged.named_modules())
    torch.testing.assert_close(logits(merged, batch), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_the_server_refuses_it_beside_other_adapters_naming_the_whole_part(tmp_path, vlm_dirs, method):
    base_dir = vlm_dirs("smolvlm")
    config = method_config(method, "method.train_vision_tower=full")
    model = method_for(method).apply(load_model(str(base_dir))[0], config)
    method_for(method).save(model, tmp_path)
    (tmp_path / "hone.json").write_text(json.dumps({"method": config.model_dump()}))
    engine = Engine(*load_model(str(base_dir)))
    with pytest.raises(ModelError, match="cannot be served side by side.*vision tower whole") as caught:
        engine.register("tuned", tmp_path)
    assert "hone export --merge" in caught.value.hint
    assert method_for(method).side_by_side(method_config(method, "method.train_vision_tower=lora"))


def test_true_means_the_methods_own_way_and_full_refuses_lora():
    assert method_config("lora", "method.train_vision_tower=true").train_vision_tower == "lora"
    assert method_config("full", "method.train_vision_tower=true").train_vision_tower == "full"
    with pytest.raises(ConfigError):
        method_config("full", "method.train_projector=lora")


def test_the_shapes_demo_under_lora_trains_its_new_tower_and_projector_whole():
    config = load_config(None, ["method.type=lora"], preset="shapes-demo").method
    assert whole_parts(config) == {"projector", "vision_tower"}


def test_a_projector_without_linear_layers_trains_whole_under_lora(vlm_dirs):
    base, _, _ = load_model(str(vlm_dirs("gemma3-vl")))
    model = method_for("lora").apply(base, method_config("lora", "method.train_projector=full"))
    assert any(module_part(n) == "projector" for n, p in model.named_parameters() if p.requires_grad)


def test_a_projector_inside_a_tower_trained_whole_trains_with_it(vlm_dirs):
    base, _, _ = load_model(str(vlm_dirs("qwen2.5-vl")))  # its projector (visual.merger) sits in the tower
    config = method_config("lora", "method.train_vision_tower=full", "method.train_projector=lora")
    model = method_for("lora").apply(base, config)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad and module_part(n) != "language_model"]
    assert any(module_part(n.replace(".modules_to_save.default", "")) == "projector" for n in trainable)
    assert all(".modules_to_save.default." in n and "lora_" not in n for n in trainable)
