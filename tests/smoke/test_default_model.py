"""The real default model: it loads from the shipped GGUF (converted once) and trains two steps."""

import json

import pytest

pytestmark = pytest.mark.smoke


def test_default_model_loads_and_trains_two_steps(tmp_path):
    from hone.api import train
    from hone.examples import pizza
    from hone.models.load import load_model

    model, tokenizer, source = load_model("smollm2-135m-instruct")
    assert source.kind == "shipped" and len(source.sha256) == 64
    assert model.config.num_hidden_layers == 30 and len(tokenizer) == 49152
    train_path, _ = pizza.write_dataset(tmp_path / "data", train=16, heldout=1)
    result = train(None, [f"data.train={train_path}", f"output_dir={tmp_path}", "name=smoke", "train.max_steps=2",
                          "train.batch_size=4", "data.validation_fraction=0"], progress=False, log=lambda *a: None)
    losses = [json.loads(line)["loss"] for line in open(result.run_dir / "metrics.jsonl")]
    assert len(losses) == 2 and all(0 < loss < 10 for loss in losses)
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()
