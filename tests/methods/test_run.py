"""Every method through `hone train` (the one loop, its checkpoints and artifact), then hone's generation
on the saved artifact, and `hone export --merge` on the command line."""

import json
import subprocess
import sys

import pytest

from hone.api import generate, train
from hone.models.artifact import read_manifest

RUNS = {
    "qlora": ["method=qlora", "method.rank=4"],
    "full": ["method=full", "train.optimizer=adamw_8bit", "train.lr=1e-3"],
    "layers": ["method=layers", "method.top_k=1", "method.embeddings=true", "method.head=true"],
    "adapters": ["method=adapters"],
    "prompt_tuning": ["method=prompt_tuning", "data.packing=false", "method.num_virtual_tokens=4",
                      "method.init=text", "method.init_text=Answer with JSON"],
    "prefix_tuning": ["method=prefix_tuning", "data.packing=false", "method.num_virtual_tokens=4",
                      "method.projection=true", "method.projection_hidden=32"],
    "ia3": ["method=ia3", "train.lr=0.1"],
}


@pytest.fixture
def run(tmp_path, tiny_model_dir, pizza_data):
    def go(name, *overrides, log=lambda *a: None):
        base = [f"model={tiny_model_dir}", f"data.train={pizza_data[0]}", f"output_dir={tmp_path}", f"name={name}",
                "train.lr=5e-3", "train.threads=1", "data.max_length=128", "train.batch_size=4",
                "train.max_steps=3", "train.eval_every=3"]
        return train(None, base + list(overrides), progress=False, log=log)
    return go


@pytest.mark.parametrize("name", list(RUNS))
def test_method_trains_through_the_loop_and_generates(run, name):
    said = []
    result = run(name, *RUNS[name], log=said.append)
    losses = [json.loads(line) for line in open(result.run_dir / "metrics.jsonl")]
    assert [r["step"] for r in losses if "loss" in r] == [1, 2, 3]
    assert all(r["val_loss"] == r["val_loss"] for r in losses if "val_loss" in r)  # not NaN
    assert read_manifest(result.adapter_dir)["method"]["type"] == RUNS[name][0].split("=")[1]
    if name == "qlora":
        line = next(s for s in said if s.startswith("qlora:"))
        assert "MiB ->" in line and "NF4" in line
    text = generate("Order a large pizza", adapter=result.run_dir, max_new_tokens=4)
    assert isinstance(text, str)


def test_export_merge_on_the_command_line(run, tmp_path):
    from transformers import AutoModelForCausalLM

    result = run("lora", "method=lora", "method.dora=true")
    out = tmp_path / "merged"
    done = subprocess.run([sys.executable, "-m", "hone", "export", "--merge", str(result.run_dir), "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "merged lora" in done.stdout and "fp32" in done.stdout
    assert AutoModelForCausalLM.from_pretrained(out).config.num_hidden_layers == 2

    again = subprocess.run([sys.executable, "-m", "hone", "export", "--merge", str(result.run_dir), "--out", str(out)],
                           capture_output=True, text=True)
    assert again.returncode == 2 and "not empty" in again.stderr and "Traceback" not in again.stderr
    missing = subprocess.run([sys.executable, "-m", "hone", "export"], capture_output=True, text=True)
    assert missing.returncode == 2 and "--merge" in missing.stderr


@pytest.mark.parametrize("name", ["prefix_tuning", "full"])
def test_bf16_runs_train_and_save_fp32_tuned_weights(run, name):
    from safetensors import safe_open

    result = run(name, *RUNS[name], "train.precision=bf16")
    files = {"prefix_tuning": "adapter_model.safetensors", "full": "model.safetensors"}
    with safe_open(str(result.adapter_dir / files[name]), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
    import torch

    assert dtypes == {torch.float32}
    assert isinstance(generate("hi", adapter=result.run_dir, max_new_tokens=3), str)
