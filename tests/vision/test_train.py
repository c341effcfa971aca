"""SFT and DPO on picture records through hone's loop: the loss falls, what trains is what the method
config says, and the artifact reloads and generates with an image."""

import json

import pytest
from peft import PeftModel
from safetensors.torch import load_file

from hone.api import generate, train
from hone.data.formats import parse_message
from hone.errors import ConfigError
from hone.export.merge import merge_artifact
from hone.models.load import load_model
from hone.methods.tuned import load_tuned
from hone.models.generate import generate_batch
from hone.models.vision import module_part
from tests.vision.conftest import colour_question, shape_picture


def run(tmp_path, model_dir, data, *overrides, name="run"):
    return train(None, [f"model={model_dir}", f"data.train={data}", f"output_dir={tmp_path}", f"name={name}",
                        "train.lr=1e-2", "train.threads=1", "train.max_steps=6", "data.validation_fraction=0",
                        *overrides], progress=False, log=lambda *a: None)


def losses(result) -> list[float]:
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows if "step" in row and "loss" in row]


def adapted_parts(adapter_dir) -> set[str]:
    """The parts of the model whose layers the saved adapter holds weights for."""
    return {module_part(name) for name in load_file(adapter_dir / "adapter_model.safetensors")}


def ask(model, tokenizer, colour="red"):
    conversation = [parse_message(colour_question(colour, 99), "messages[0]")]
    return generate_batch(model, tokenizer, [conversation], max_new_tokens=3)[0]


@pytest.mark.parametrize("family", ["smolvlm", "qwen2.5-vl"])
def test_sft_lora_trains_the_language_model_only_and_reloads(tmp_path, vlm_dirs, colour_files, family):
    result = run(tmp_path, vlm_dirs(family), colour_files[0])
    trace = losses(result)
    assert trace[-1] < trace[0] - 0.1, trace
    assert adapted_parts(result.adapter_dir) == {"language_model"}
    model, tokenizer, manifest = load_tuned(result.adapter_dir)
    assert isinstance(model, PeftModel) and manifest["method"]["type"] == "lora"
    answer = ask(model, tokenizer)
    merge_artifact(result.run_dir, tmp_path / "merged")  # a standalone model directory, processor included
    merged, merged_tokenizer, _ = load_model(str(tmp_path / "merged"))
    assert ask(merged, merged_tokenizer) == answer


def test_lora_on_the_projector_and_vision_tower_too(tmp_path, vlm_dirs, colour_files):
    result = run(tmp_path, vlm_dirs("llava"), colour_files[0], "method.train_projector=true",
                 "method.train_vision_tower=true")
    assert adapted_parts(result.adapter_dir) == {"language_model", "projector", "vision_tower"}
    trace = losses(result)
    assert trace[-1] < trace[0] - 0.1, trace


def test_lora_on_some_blocks_of_the_language_model(tmp_path, vlm_dirs, colour_files):
    result = run(tmp_path, vlm_dirs("qwen2.5-vl"), colour_files[0], "method.layers_to_transform=[1]",
                 "method.target_modules=[q_proj,v_proj]", "train.max_steps=1")
    names = set(load_file(result.adapter_dir / "adapter_model.safetensors"))
    assert names and all(".layers.1.self_attn." in n and module_part(n) == "language_model" for n in names)


def test_a_projector_without_linear_layers_is_refused_for_lora(tmp_path, vlm_dirs, colour_files):
    with pytest.raises(ConfigError, match="no linear layer"):
        run(tmp_path, vlm_dirs("gemma3-vl"), colour_files[0], "method.train_projector=true")


def test_full_trains_the_chosen_parts_and_the_artifact_generates(tmp_path, vlm_dirs, colour_files):
    result = run(tmp_path, vlm_dirs("gemma3-vl"), colour_files[0], "method=full", "train.lr=3e-3",
                 "method.train_projector=true")
    trace = losses(result)
    assert trace[-1] < trace[0] - 0.1, trace
    model, tokenizer, _ = load_tuned(result.adapter_dir)
    picture = tmp_path / "red.png"
    shape_picture("red", 99).save(picture)  # the picture `ask` sends as a data: URL
    answer = generate("What colour is the square?", adapter=result.adapter_dir, images=[str(picture)],
                      max_new_tokens=3)
    assert answer == ask(model, tokenizer)


def test_qlora_quantizes_the_language_model_only(tmp_path, vlm_dirs, colour_files):
    result = run(tmp_path, vlm_dirs("smolvlm"), colour_files[0], "method=qlora", "method.rank=4", name="q")
    trace = losses(result)
    assert trace[-1] < trace[0] - 0.05, trace
    model, tokenizer, _ = load_tuned(result.adapter_dir)
    quantized = {module_part(name) for name, module in model.named_modules() if type(module).__name__ == "Linear4bit"}
    assert quantized == {"language_model"}
    assert isinstance(ask(model, tokenizer), str)


@pytest.mark.parametrize("family", ["qwen2.5-vl", "llava"])
def test_dpo_on_picture_pairs(tmp_path, vlm_dirs, colour_files, family):
    result = run(tmp_path, vlm_dirs(family), colour_files[1], "objective=dpo", "train.batch_size=12", "train.lr=3e-3")
    trace = losses(result)
    assert trace[0] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at the start
    assert all(b < a for a, b in zip(trace, trace[1:])) and trace[-1] < trace[0] - 0.01, trace


def test_training_refuses_more_images_than_data_max_images(tmp_path, vlm_dirs, colour_files):
    from hone.errors import DataError

    with pytest.raises(DataError, match="hold more than data.max_images=1 images") as error:
        two = colour_question("red", 0)
        two["content"] = two["content"][:1] * 2 + two["content"][1:]
        data = tmp_path / "two.jsonl"
        data.write_text(json.dumps({"messages": [two, {"role": "assistant", "content": "red"}]}) + "\n")
        run(tmp_path, vlm_dirs("smolvlm"), data, "data.max_images=1")
    assert error.value.issues[0].line == 1
