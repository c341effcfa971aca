"""The forgetting gate on a tiny model that first learned some general text: over-training on pizza
orders fails it, a light touch passes."""

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch


@pytest.fixture(scope="module")
def general_base(tmp_path_factory):
    """A tiny Llama trained (all weights, 40 steps) on the shipped replay paragraphs: a 'pretrained' base."""
    from hone.data.pack import collate
    from hone.data.replay import replay_examples
    from hone.data.template import tokenize_example
    from hone.models.tiny import tiny_model, tiny_tokenizer

    torch.manual_seed(0)
    torch.set_num_threads(1)
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer).train()
    examples = [tokenize_example(e, tokenizer, max_length=128) for e in replay_examples(100, 0.5, seed=0)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(40):
        batch = collate([examples[(step * 4 + i) % len(examples)] for i in range(4)], None, tokenizer.pad_token_id)
        logits = model(input_ids=batch["input_ids"], attention_mask=(batch["segment_ids"] > 0).long()).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten(), ignore_index=-100)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    path = tmp_path_factory.mktemp("general-base")
    model.eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_gate_fails_an_over_trained_model_and_passes_a_light_one(tmp_path, monkeypatch, general_base, pizza_files):
    from hone.api import train
    from hone.cli import GATE_FAILED

    monkeypatch.setenv("HONE_HOME", str(tmp_path / "home"))
    common = [f"model={general_base}", f"data.train={pizza_files[0]}", f"output_dir={tmp_path}", "train.threads=1",
              "data.max_length=384", "forgetting.max_drop={general_text: 0.10}", "forgetting.max_new_tokens=4"]
    light = train(None, [*common, "name=light", "train.max_steps=1", "train.lr=1e-4"], progress=False, log=lambda *a: None)
    heavy_args = [*common, "name=heavy", "train.max_steps=40", "train.lr=3e-2", "method.rank=32",
                  "train.schedule=constant"]
    proc = subprocess.run([sys.executable, "-m", "hone", "train", *heavy_args, "--no-progress"],
                          capture_output=True, text=True)
    assert proc.returncode == GATE_FAILED != 0, proc.stderr
    assert "run failed the forgetting gate" in proc.stdout and "| general_text |" in proc.stdout
    heavy_dir = tmp_path / "heavy"
    heavy_metrics = json.loads((heavy_dir / "adapter" / "hone.json").read_text())["metrics"]
    for run_dir, expected in ((light.run_dir, "succeeded"), (heavy_dir, "failed the forgetting gate")):
        result = SimpleNamespace(run_dir=run_dir, adapter_dir=run_dir / "adapter")
        manifest = json.loads((result.adapter_dir / "hone.json").read_text())
        assert manifest["status"] == expected and manifest["metrics"]["status"] == expected
        table = json.loads((result.run_dir / "forgetting.json").read_text())["table"]
        text = table["parts"]["general_text"]
        assert text["ci_low"] <= text["delta"] <= text["ci_high"]
        assert table["passed"] == (expected == "succeeded")
    assert heavy_metrics["forgetting_general_text_delta"] > 0.10 > light.metrics["forgetting_general_text_delta"]
