"""`hone estimate` and the memory check of `hone train`: counts, bytes, the measured peak of a real run."""

import json
import os
import re
import subprocess
import sys
import textwrap

from pathlib import Path

import pytest

import hone
from hone.config.load import load_config
from hone.errors import ResourceError
from hone.methods import METHODS, method_for
from hone.models.load import load_model, load_tokenizer, resolve_model
from hone.objectives import OBJECTIVES, build_objective
from hone.train.estimate import GIB, analytical, check_fits, workload_for


def test_estimate_counts_bytes_and_times_real_steps(tiny_model_dir, pizza_files):
    overrides = [f"model={tiny_model_dir}", f"data.train={pizza_files[0]}", "data.validation_fraction=0",
                 "train.batch_size=4", "train.threads=1", "data.max_length=384"]
    result = hone.estimate(None, overrides, calibration_steps=1, log=lambda *a: None)
    (row,) = result.methods
    config = load_config(None, overrides)
    model, _, _ = load_model(str(tiny_model_dir))
    tuned = method_for("lora").apply(model, config.method)
    trainable = sum(p.numel() for p in tuned.parameters() if p.requires_grad)
    total = sum(p.numel() for p in tuned.parameters())
    buffers = sum(b.numel() * b.element_size() for b in tuned.buffers())
    assert (row.method, row.trainable, row.total) == ("lora", trainable, total)
    assert row.weights == 4 * total + buffers  # fp32
    assert row.gradients == 4 * trainable and row.optimizer == 8 * trainable  # AdamW: two fp32 moments
    assert row.activations > 0
    assert row.steps_per_epoch == 10  # 40 examples in micro-batches of 4
    assert row.seconds_per_step > 0 and row.seconds_per_epoch == pytest.approx(10 * row.seconds_per_step)
    assert result.workload.from_data and result.workload.rows == 1  # segment attention: one packed row
    table = result.render()
    assert "| lora |" in table and "time/epoch" in table


def test_estimate_times_dpo_without_an_adapter(tiny_model_dir, tmp_path):
    """The calibration steps run the loop's pieces, the start model's reference pass included."""
    from hone.examples import preferences

    pairs = preferences.write_jsonl(tmp_path / "pairs.jsonl", preferences.concise_pairs(8, 0))
    overrides = [f"model={tiny_model_dir}", f"data.train={pairs}", "data.validation_fraction=0", "objective=dpo",
                 "method=full", "train.batch_size=4", "train.threads=1", "data.max_length=384"]
    (row,) = hone.estimate(None, overrides, calibration_steps=1, log=lambda *a: None).methods
    assert row.method == "full" and row.seconds_per_step > 0, row


def test_workload_without_data_and_under_bf16(tiny_model_dir):
    config = load_config(None, [f"model={tiny_model_dir}", "train.batch_size=4", "data.max_length=128"])
    packed = workload_for(config, None, segmented=True)
    assert (packed.rows, packed.row_length, packed.tokens) == (1, 512, 512)
    padded = workload_for(load_config(config, {"data.packing": False}), None, segmented=True)
    assert (padded.rows, padded.row_length) == (4, 128)
    source = resolve_model(str(tiny_model_dir))
    fp32 = analytical(config, source, packed, "lora")
    bf16 = analytical(load_config(config, {"train.precision": "bf16"}), source, packed, "lora")
    frozen = fp32.total - fp32.trainable
    assert fp32.weights - bf16.weights == 2 * frozen  # frozen weights stored in bf16
    assert bf16.activations < fp32.activations
    doubled = analytical(load_config(config, {"train.batch_size": 8}), source,
                         workload_for(load_config(config, {"train.batch_size": 8}), None), "lora")
    assert fp32.activations < doubled.activations < 2 * fp32.activations + 1  # linear in tokens + fixed part


def test_memory_per_process_under_fsdp_and_ddp(tmp_path, pizza_files):
    """With 2 processes: fsdp halves the optimizer states and the weights (plus the root and two layers
    gathered whole), ddp keeps everything, and each process's activations are those of its share of the
    biggest micro-batch. `hone train`'s check is per process."""
    from hone.models.tiny import save_tiny_model

    model_dir = save_tiny_model(tmp_path / "deep", layers=8)  # FSDP saves memory only beyond a few layers
    config = load_config(None, [f"model={model_dir}", f"data.train={pizza_files[0]}", "method=full",
                                "train.batch_size=4", "data.max_length=384"])
    source = resolve_model(str(model_dir))
    examples = build_objective(config.objective).prepare(config.data, load_tokenizer(source), seed=0).train
    one = workload_for(config, examples)
    two = workload_for(config, examples, processes=2)
    assert one.tokens / 2 <= two.tokens < one.tokens and two.steps_per_epoch == one.steps_per_epoch
    single = analytical(config, source, one, "full")
    fsdp = analytical(load_config(config, {"train.distributed": "fsdp"}), source, two, "full", processes=2)
    ddp = analytical(load_config(config, {"train.distributed": "ddp"}), source, two, "full", processes=2)
    assert fsdp.optimizer == single.optimizer // 2 and ddp.optimizer == single.optimizer
    assert (ddp.weights, ddp.gradients) == (single.weights, single.gradients)
    assert single.gradients / 2 < fsdp.gradients < single.gradients  # + the root's and one layer's, whole
    shard = float(re.search(r"weights ([\d.]+) KiB of its shard", fsdp.notes[0]).group(1)) * 1024
    assert shard == pytest.approx(single.weights / 2, rel=0.01)
    assert shard < fsdp.weights < single.weights
    assert fsdp.activations == ddp.activations < single.activations

    limit = (fsdp.memory + single.memory) / 2 / GIB  # enough for each of 2 fsdp processes, not for one
    check_fits(load_config(config, {"train.distributed": "fsdp", "train.memory_limit_gb": limit}), source,
               examples, log=lambda *a: None, processes=2)
    with pytest.raises(ResourceError, match="needs about"):
        check_fits(load_config(config, {"train.memory_limit_gb": limit}), source, examples, log=lambda *a: None)


def test_train_refuses_a_run_that_cannot_fit(train_tiny, tmp_path):
    with pytest.raises(ResourceError) as caught:
        train_tiny("train.max_steps=1", "train.memory_limit_gb=0.001", name="huge")
    assert "needs about" in str(caught.value) and "train.memory_limit_gb" in str(caught.value)
    assert not (tmp_path / "huge").exists()  # refused before anything was written
    result = train_tiny("train.max_steps=1", "train.memory_limit_gb=0.001", "train.memory_check=false", name="ok")
    assert result.steps == 1


def child_env(**extra) -> dict:
    """The environment of a child process that imports this hone (the tree under test), not another."""
    src = str(Path(hone.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), **extra}


def test_cli_estimate_all_methods_as_json(tiny_model_dir, tmp_path):
    out = subprocess.run([sys.executable, "-m", "hone", "estimate", f"model={tiny_model_dir}",
                          "train.batch_size=2", "data.max_length=64", "train.threads=1", "--all-methods",
                          "--steps", "1", "--json"], capture_output=True, text=True, cwd=tmp_path, env=child_env())
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert [m["method"] for m in report["methods"]] == list(METHODS)
    assert all(m["memory"] > m["weights"] > 0 and m["seconds_per_step"] > 0 for m in report["methods"])
    bad = subprocess.run([sys.executable, "-m", "hone", "estimate", "--method", "nope", f"model={tiny_model_dir}"],
                         capture_output=True, text=True, cwd=tmp_path, env=child_env())
    assert bad.returncode != 0 and "unknown method 'nope'" in bad.stderr and "Traceback" not in bad.stderr


PEAK_CHILD = textwrap.dedent("""
    import json, sys
    import torch, transformers, peft
    from hone.api import train
    from hone.train.estimate import peak_rss, reset_peak_rss

    baseline = reset_peak_rss()
    train(None, sys.argv[1:], progress=False, log=lambda *a: None)
    print(json.dumps({"baseline": baseline, "peak": peak_rss()}))
""")


def test_measured_peak_memory_of_a_short_run_is_within_25_percent(tmp_path):
    """A real 2-step run (4 layers, hidden 256, 8 x 512 tokens) in its own process: its peak RSS above
    the imports' baseline is within 25 % of the estimate. glibc's mmap threshold is fixed so RSS
    follows what is allocated rather than what the heap keeps cached (see hone.train.estimate)."""
    from pydoc_data.topics import topics

    from hone.models.tiny import save_tiny_model

    model_dir = save_tiny_model(tmp_path / "model", layers=4, hidden=256)
    words = " ".join(topics.values()).split()
    data = tmp_path / "long.jsonl"
    data.write_text("".join(json.dumps({"text": " ".join(words[i * 400:(i + 1) * 400])}) + "\n" for i in range(24)))
    overrides = [f"model={model_dir}", f"data.train={data}", "data.max_length=512", "train.batch_size=8",
                 "train.max_steps=2", "data.validation_fraction=0", "train.threads=1",
                 f"output_dir={tmp_path / 'runs'}", "name=peak"]
    estimate = hone.estimate(None, overrides, calibration_steps=0, log=lambda *a: None)
    assert estimate.workload.tokens == 8 * 512  # every example fills max_length
    env = child_env(MALLOC_MMAP_THRESHOLD_="131072")
    out = subprocess.run([sys.executable, "-c", PEAK_CHILD, *overrides], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    used = measured["peak"] - measured["baseline"]
    expected = estimate.methods[0].memory
    assert expected > 200 * 2**20  # activations dominate: the formula is what is tested
    assert abs(used - expected) / expected < 0.25, (used / 2**20, expected / 2**20)


def objective_runs(tiny_model_dir, pizza_files, tmp_path) -> dict:
    """Each registered objective's overrides on data it trains on (the tiny model is its own teacher)."""
    from hone.examples import preferences

    pairs = preferences.write_jsonl(tmp_path / "pairs.jsonl", preferences.concise_pairs(8, 0))
    labels = preferences.write_jsonl(tmp_path / "labels.jsonl", preferences.delivery_labels(8, 0))
    chats = f"data.train={pizza_files[0]}"
    return {"sft": [chats], "dpo": [f"data.train={pairs}", "objective=dpo"],
            "kto": [f"data.train={pairs}", "objective=kto"], "orpo": [f"data.train={pairs}", "objective=orpo"],
            "simpo": [f"data.train={pairs}", "objective=simpo"], "reward": [f"data.train={pairs}", "objective=reward"],
            "classify": [f"data.train={labels}", "task=classify"],
            "grpo": [chats, "objective=grpo", "objective.group_size=2", "objective.max_new_tokens=4",
                     'objective.grader={"type": "string_check", "operation": "contains", "reference": "a"}'],
            "distill": [chats, "objective=distill", f"objective.teacher={tiny_model_dir}", "objective.max_new_tokens=4"]}


@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_estimate_runs_for_every_objective(objective, tiny_model_dir, pizza_files, tmp_path):
    """`hone estimate` prepares and attaches the objective as training does (distillation's mode, GRPO's
    tokenizer and reward, a reward model's head) before it times steps; the steps of sampling objectives
    say that sampling is in their time. Without data only sft is timed (on random rows); the others say so."""
    base = [f"model={tiny_model_dir}", "data.validation_fraction=0", "train.batch_size=2", "train.threads=1",
            "data.max_length=128"]
    overrides = objective_runs(tiny_model_dir, pizza_files, tmp_path)[objective]
    (row,) = hone.estimate(None, base + overrides, calibration_steps=1, log=lambda *a: None).methods
    assert row.memory > row.weights > 0 and row.seconds_per_step > 0 and row.tokens_per_s > 0, row
    assert (objective in ("grpo", "distill")) == any("samples from the model" in n for n in row.notes), row.notes
    (bare,) = hone.estimate(None, base + overrides[1:], calibration_steps=1, log=lambda *a: None).methods
    assert bare.memory > 0 and (bare.seconds_per_step is None) == (objective != "sft"), bare
    assert (objective != "sft") == any("not timed" in n for n in bare.notes), bare.notes
