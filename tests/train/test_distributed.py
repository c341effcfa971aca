"""Two gloo processes (DDP and FSDP2, launched by `hone train --nproc 2`, i.e. torchrun) train exactly
like one process on the same global batch; a checkpoint written by two processes resumes on one."""

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from hone.data.template import TokenizedExample
from hone.train.distributed import Runtime

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed")


def _losses(run_dir):
    return [(r["step"], r["loss"], (r["targets"], r["grad_norm"]))
            for r in map(json.loads, open(run_dir / "metrics.jsonl")) if "loss" in r]


def _common(tmp_path, tiny_model_dir, pizza_files, *extra):
    # batch_size 3 over 2 ranks: uneven shares (2 and 1 examples) in every micro-batch
    return [f"model={tiny_model_dir}", f"data.train={pizza_files[0]}", f"output_dir={tmp_path}",
            "train.lr=5e-3", "train.threads=1", "data.max_length=384", "train.batch_size=3",
            "train.grad_accum=2", "train.schedule=constant", "--no-progress", *extra]


def _torchrun(args, nproc=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    out = subprocess.run([sys.executable, "-m", "hone", "train", f"--nproc={nproc}", *args],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out


def _single(args):
    from hone.cli import main

    assert main(["train", *args]) == 0


def _assert_same_run(a, b, tol=1e-5):
    la, lb = _losses(a), _losses(b)
    assert [s for s, _, _ in la] == [s for s, _, _ in lb]
    for (step, x, ta), (_, y, tb) in zip(la, lb):
        assert ta[0] == tb[0], step  # the same global batch: the same target tokens
        assert ta[1] == pytest.approx(tb[1], rel=1e-4), step  # the norm of the whole (all-reduced) gradient
        assert x == pytest.approx(y, abs=tol), step


def _assert_same_adapter(a, b):
    wa = load_file(a / "adapter" / "adapter_model.safetensors")
    wb = load_file(b / "adapter" / "adapter_model.safetensors")
    assert wa.keys() == wb.keys() and wa
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=1e-5, rtol=1e-4)


def test_ddp_matches_one_process(tmp_path, tiny_model_dir, pizza_files):
    common = _common(tmp_path, tiny_model_dir, pizza_files, "train.max_steps=3")
    _single([*common, "name=single"])
    out = _torchrun([*common, "name=ddp", "train.distributed=ddp"])
    assert "ddp over 2 processes" in out.stdout
    assert out.stdout.count("adapter saved to") == 1  # rank 0 alone reports
    _assert_same_run(tmp_path / "single", tmp_path / "ddp")
    _assert_same_adapter(tmp_path / "single", tmp_path / "ddp")


def test_fsdp_matches_one_process_and_resumes_on_one(tmp_path, tiny_model_dir, pizza_files):
    """FSDP2 over 2 processes for 2 steps, then the same run resumed by 1 process for 2 more, equals
    4 steps of one process: the checkpoint holds whole, name-keyed weights and optimizer state."""
    common = _common(tmp_path, tiny_model_dir, pizza_files)
    _single([*common, "name=single", "train.max_steps=4"])
    out = _torchrun([*common, "name=fsdp", "train.distributed=fsdp", "train.max_steps=2", "train.save_every=2"])
    assert "fsdp over 2 processes" in out.stdout
    # the memory check's estimate, per process, has the shard each process then holds
    assert "per process of 2 (fsdp)" in out.stdout and "memory available to each process" in out.stdout
    held = float(re.search(r"holds ([\d.]+) MiB of the weights", out.stdout).group(1))
    assert float(re.search(r"weights ([\d.]+) KiB of its shard", out.stdout).group(1)) / 1024 == pytest.approx(
        held, rel=0.02)
    single = _losses(tmp_path / "single")
    sharded = _losses(tmp_path / "fsdp")
    assert [s for s, _, _ in sharded] == [1, 2]
    for (step, x, _), (_, y, _) in zip(single, sharded):
        assert x == pytest.approx(y, abs=1e-5), step

    _single(["--resume", str(tmp_path / "fsdp"), "train.max_steps=4", "--no-progress"])
    _assert_same_run(tmp_path / "single", tmp_path / "fsdp")
    _assert_same_adapter(tmp_path / "single", tmp_path / "fsdp")


def test_qlora_under_fsdp_shards_the_4bit_base_and_trains_like_one_process(tmp_path, tiny_model_dir, pizza_files):
    """`quantizer: auto` is torchao under FSDP2: its NF4 weights are sharded with the rest (each of 2
    processes holds half of all weights), and the run, resumed by one process after 2 steps, matches
    one process quantizing the same way."""
    common = _common(tmp_path, tiny_model_dir, pizza_files, "method=qlora", "method.rank=4")
    _single([*common, "name=single", "method.quantizer=torchao", "train.max_steps=3"])
    out = _torchrun([*common, "name=fsdp", "train.distributed=fsdp", "train.max_steps=2", "train.save_every=2"])
    assert "NF4 quantization (torchao) of 14 linear layers" in out.stdout
    held, whole = map(float, re.search(r"holds ([\d.]+) MiB of the weights' ([\d.]+) MiB", out.stdout).groups())
    assert held == pytest.approx(whole / 2, rel=0.05)  # replicated 4-bit layers would make it ~0.7
    assert "unwaited" not in out.stderr  # the gathered 4-bit weights' collectives all completed
    _single(["--resume", str(tmp_path / "fsdp"), "train.max_steps=3", "--no-progress"])
    manifest = json.loads((tmp_path / "fsdp" / "adapter" / "hone.json").read_text())
    assert manifest["method"]["quantizer"] == "torchao"
    _assert_same_run(tmp_path / "single", tmp_path / "fsdp")
    _assert_same_adapter(tmp_path / "single", tmp_path / "fsdp")


def test_qlora_under_fsdp_in_bf16_trains_like_one_process(tmp_path, tiny_model_dir, pizza_files):
    """bf16 mixed precision: FSDP2 gathers the 4-bit weights as they are and the LoRA weights in bf16."""
    common = _common(tmp_path, tiny_model_dir, pizza_files, "method=qlora", "method.rank=4", "train.max_steps=2",
                     "train.precision=bf16")
    _single([*common, "name=single", "method.quantizer=torchao"])
    _torchrun([*common, "name=fsdp", "train.distributed=fsdp"])
    for (step, x, _), (_, y, _) in zip(_losses(tmp_path / "single"), _losses(tmp_path / "fsdp"), strict=True):
        assert x == pytest.approx(y, abs=2e-3), step


def test_fsdp_refuses_a_process_count_that_cannot_split_4bit_rows(tiny_model_dir):
    from hone.errors import ConfigError
    from hone.methods import qlora
    from hone.models.load import load_model
    from hone.train.distributed import _fully_shard

    model = load_model(str(tiny_model_dir))[0]
    qlora.quantize(model, qlora.Config(quantizer="torchao"))
    with pytest.raises(ConfigError) as error:  # before any process group is needed
        _fully_shard(model, model, "fp32", torch.device("cpu"), 3)
    assert "which 3 processes cannot share evenly" in str(error.value) and error.value.where == "train.distributed"


def test_a_rank_without_examples_gets_a_target_free_one():
    examples = [TokenizedExample([1, 2, 3], [-100, 2, 3], "a"), TokenizedExample([4, 5], [4, 5], "b"),
                TokenizedExample([6, 7], [6, 7], "c")]
    first, second = (Runtime(torch.device("cpu"), "fp32", "ddp", rank, 2) for rank in (0, 1))
    assert [e.where for e in first.shard(examples)] == ["a", "c"]
    assert [e.where for e in second.shard(examples)] == ["b"]
    (dummy,) = second.shard(examples[:1])
    assert dummy.input_ids == [1, 2, 3] and dummy.labels == [-100, -100, -100]
