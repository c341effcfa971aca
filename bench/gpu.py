"""hone on a GPU, against a plain transformers + PEFT loop in the same run: throughput, peak memory and
MFU of LoRA, QLoRA and full fine-tuning on a random 1.1B Llama at sequence length 2048, then the
memory of LoRA and QLoRA on a random Llama-3-8B-shaped model with and without activation
checkpointing. Rewrites docs/gpu.md (the figures also go to docs/gpu.json).

    python3 bench/gpu.py --peer                          # on an H100/H200: the whole table, ~8 minutes
    python3 bench/gpu.py --peer --part 1b                # only the 1.1B rows (--part 8b: only the 8B rows)
    python3 bench/gpu.py --part 1b --kernels liger,compile   # both kinds of fused kernels side by side
    python3 bench/gpu.py --device cpu --tiny --peer --out /tmp/gpu.md   # the same code path on a CPU

Rows (each in its own process, so that no row's kernels, compiled graphs or allocator state reach
another's; the model and the batches come from the same seeds in every process):
- hone eager: `train.kernels=none`; hone fused: what `train.kernels=auto` picks (Liger Kernel where
  installed, else torch.compile of each layer's norms and MLP), or each of `--kernels liger,compile`
  to see which is faster. All are hone's own step: `Runtime.wrap`, packed rows with
  segment attention (one variable-length flash call on CUDA), `optimizer_step` with the chunked
  output-head loss. A fused row's per-step losses must equal the eager row's within bf16 rounding
  (2 %), or the run fails.
- peer: a plain transformers + PEFT loop on the same weights and the same rows: sdpa attention over
  whole rows, transformers' own loss over full logits, fused AdamW, bf16 autocast; LoRA on a bf16
  base, QLoRA through transformers' BitsAndBytesConfig (NF4, double quantization, bf16 compute), full
  fine-tuning on fp32 weights.

Rows are fully packed with examples of random lengths (128 to 2048 tokens), every token a target.
MFU = model FLOPs per second / this card's measured dense bf16 matmul rate (`hone.models.flops`:
linear layers by their logical shape, so 4-bit layers count in full; attention per packed example;
no recomputation). Peak memory: CUDA's max allocated bytes over the timed steps (on a CPU, the
process's peak RSS, which is no GPU figure).

Carry to a GPU machine that lacks them (Python 3.12 image with torch, transformers, peft, triton):
    pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux2014_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_28_x86_64 \\
        -d .whl pydantic==2.14.4 pydantic_core==2.50.5 \\
        annotated-types==0.8.0 typing-inspection==0.4.5 bitsandbytes==0.50.2 torchao==0.18.0 \\
        liger-kernel==0.8.5
and there:
    pip install --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:$PWD/src python3 bench/gpu.py --peer
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

SHAPES = {
    "1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
               intermediate_size=8192, vocab_size=32000),
    "8b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
               intermediate_size=14336, vocab_size=128256),
    "tiny": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=256, vocab_size=512),
    "tiny-8b": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
                    intermediate_size=896, vocab_size=2048),  # the 8B's proportions, scaled down
}
LOSS_TOLERANCE = 0.02  # fused vs eager kernels, relative, per step (bf16 rounding)
ROW_TIMEOUT_S = 420


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_tflops(device, dtype=torch.bfloat16, size: int = 8192, repeats: int = 20) -> float:
    """The dense matmul rate this device reaches (the MFU denominator)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e12


def check_bf16_against_fp32(device: str, steps: int) -> dict:
    """Train the tiny test model for a few steps in fp32 and in bf16 through `hone.train`; the losses
    must agree within 2 %. Also: packed segment attention equals a dense block-causal mask in bf16."""
    from hone.api import train
    from hone.examples import pizza
    from hone.models.tiny import save_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_tiny_model(Path(tmp) / "tiny")
        data, _ = pizza.write_dataset(Path(tmp) / "data", train=64, heldout=4)
        losses = {}
        for precision in ("fp32", "bf16"):
            result = train(None, [f"model={model_dir}", f"data.train={data}", f"output_dir={tmp}",
                                  f"name={precision}", f"train.device={device}", f"train.precision={precision}",
                                  f"train.max_steps={steps}", "train.batch_size=8", "train.lr=2e-3",
                                  "train.save_every=1000", "data.max_length=384"],
                           progress=False, log=lambda *_: None)
            losses[precision] = [json.loads(line)["loss"] for line in open(result.run_dir / "metrics.jsonl")
                                 if '"loss"' in line]
    worst = max(abs(a - b) / abs(a) for a, b in zip(losses["fp32"], losses["bf16"]))
    attention = check_segment_attention(torch.device(device))
    return {"worst_rel_diff": worst, "ok": worst < 0.02, **attention}


def check_segment_attention(device) -> dict:
    """The loss of a packed bf16 batch with segment attention (varlen kernel on CUDA) vs a dense mask,
    and the path full fine-tuning's fp32 queries take under bf16 autocast."""
    from hone.data.pack import collate
    from hone.models.attention import segment_path, use_segment_attention, varlen_kernel
    from hone.objectives.sft import SFT
    from hone.train.distributed import Runtime

    model = random_llama(SHAPES["tiny"], device, seed=1)
    examples = random_examples(SHAPES["tiny"]["vocab_size"], 512, random.Random(1), shortest=16, longest=256)
    runtime = Runtime(device, "bf16")
    losses = {}
    for segmented in (False, True):
        if segmented:
            use_segment_attention(model)
        objective = runtime.wrap(model, SFT(1024))
        batch = collate(examples, [list(range(len(examples)))], 0, mask=not segmented)
        with torch.no_grad(), runtime.autocast():
            losses[segmented] = objective.loss(model, batch)[0].item() / int(batch["n_targets"])
    kernel = varlen_kernel() if device.type == "cuda" else None
    diff = abs(losses[True] - losses[False]) / losses[False]
    full_path = segment_path(device.type, torch.float32, torch.bfloat16, kernel is not None)[0]
    return {"attention_kernel": kernel[0] if kernel else "sdpa per segment", "segment_vs_dense_rel": diff,
            "attention_ok": diff < 1e-2, "full_ft_attention": full_path}


def check_chunked_loss(device, tokens: int = 16384, hidden: int = 2048, vocab: int = 32000) -> dict:
    """Peak memory of the chunked fused cross-entropy (forward + backward) next to the size of the
    full fp32 logits it avoids; on CUDA only (the CPU has no peak-memory counter)."""
    from hone.objectives.losses import linear_cross_entropy

    if device.type != "cuda":
        return {"loss_peak_gib": float("nan"), "logits_gib": tokens * vocab * 4 / 2**30}
    h = torch.randn(tokens, hidden, device=device, dtype=torch.bfloat16, requires_grad=True)
    w = torch.randn(vocab, hidden, device=device, dtype=torch.bfloat16, requires_grad=True)
    t = torch.randint(0, vocab, (tokens,), device=device)
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    linear_cross_entropy(h, w, t, 4096).backward()
    sync(device)
    peak = (torch.cuda.max_memory_allocated(device) - base) / 2**30
    return {"loss_peak_gib": peak, "logits_gib": tokens * vocab * 4 / 2**30}


def random_llama(shape: dict, device, seed: int = 0, dtype=torch.float32):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**shape, max_position_embeddings=4096, tie_word_embeddings=False)
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    return model.requires_grad_(False).train()


def random_examples(vocab: int, row_tokens: int, rng: random.Random, shortest=128, longest=2048):
    """Examples of random lengths filling exactly `row_tokens` tokens, every token a target."""
    from hone.data.template import TokenizedExample

    examples, left = [], row_tokens
    while left:
        n = min(left, rng.randint(shortest, longest))
        if left - n < 2:
            n = left
        ids = [rng.randrange(3, vocab) for _ in range(n)]
        examples.append(TokenizedExample(ids, ids, "random"))
        left -= n
    return examples


def step_rows(spec: dict) -> list[list[list]]:
    """For each step, `rows` rows of exactly seq_len tokens, each a list of examples (one shape for every
    step); the same in every process."""
    rng = random.Random(0)
    vocab = SHAPES[spec["shape"]]["vocab_size"]
    return [[random_examples(vocab, spec["seq_len"], rng, longest=spec["seq_len"]) for _ in range(spec["rows"])]
            for _ in range(spec["steps"])]


# ---------------------------------------------------------------- one row (in its own process)

def hone_setup(spec: dict, device):
    """hone's model, objective, optimizer and step function for `spec` (the training loop's pieces)."""
    from hone.config.schema import TrainConfig
    from hone.data.pack import collate
    from hone.methods import METHODS
    from hone.models.attention import use_segment_attention
    from hone.objectives.sft import SFT
    from hone.train.distributed import Runtime
    from hone.train.step import optimizer_step
    from hone.train.optim import build_optimizer, build_scheduler
    from hone.train.precision import prepare_for_precision

    model = random_llama(SHAPES[spec["shape"]], device)
    use_segment_attention(model)
    if spec["method"] == "full":
        model.requires_grad_(True)
    else:
        module = METHODS[spec["method"]]
        model = module.apply(model, module.Config(rank=spec["rank"]))
    runtime = Runtime(device, spec["precision"])
    prepare_for_precision(model, spec["precision"])
    objective = runtime.wrap(model, SFT(spec["loss_chunk"]), checkpointing=spec["checkpointing"],
                             kernels=spec["kernels"])
    config = TrainConfig(lr=1e-5, max_grad_norm=1.0, schedule="constant")
    optimizer = build_optimizer(model.parameters(), config)
    scheduler = build_scheduler(optimizer, config, spec["steps"])

    def step(rows):
        examples = [e for row in rows for e in row]
        bounds = [0]
        for row in rows:
            bounds.append(bounds[-1] + len(row))
        batch = collate(examples, [list(range(a, b)) for a, b in zip(bounds, bounds[1:])], 0, mask=False)
        return optimizer_step(model, objective, [batch], optimizer, scheduler, runtime, config.max_grad_norm)["loss"]

    return model, step, runtime.kernels


def peer_setup(spec: dict, device, scratch: Path):
    """The plain loop: transformers' model with sdpa attention, PEFT, fused AdamW, bf16 autocast, the
    model's own loss over full logits; no packing-aware attention (whole rows attend causally)."""
    from peft import LoraConfig, get_peft_model

    shape = SHAPES[spec["shape"]]
    if spec["method"] == "qlora":
        from transformers import BitsAndBytesConfig, LlamaForCausalLM

        random_llama(shape, device, dtype=torch.bfloat16).save_pretrained(scratch / "base")  # hone's weights
        quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                          bnb_4bit_compute_dtype=torch.bfloat16)
        model = LlamaForCausalLM.from_pretrained(scratch / "base", quantization_config=quantization,
                                                 dtype=torch.bfloat16, device_map={"": str(device)})
    else:
        model = random_llama(shape, device, dtype=torch.float32 if spec["method"] == "full" else torch.bfloat16)
    model.set_attn_implementation("sdpa")
    if spec["method"] == "full":
        model.requires_grad_(True)
    else:
        model = get_peft_model(model, LoraConfig(r=spec["rank"], lora_alpha=2 * spec["rank"], lora_dropout=0.0,
                                                 target_modules="all-linear", task_type="CAUSAL_LM"))
    if spec["checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, fused=device.type == "cuda")

    def step(rows):
        ids = torch.tensor([[t for e in row for t in e.input_ids] for row in rows], device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return model, step, "peer"


def run_row(spec: dict) -> dict:
    """Train spec["steps"] steps and time the last ones; the figures of one table cell."""
    from hone.models.flops import training_flops

    device = torch.device(spec["device"])
    torch.backends.cuda.matmul.allow_tf32 = True
    shape = SHAPES[spec["shape"]]
    steps = step_rows(spec)
    with tempfile.TemporaryDirectory() as scratch:
        if spec["system"] == "peer":
            model, step, kernels = peer_setup(spec, device, Path(scratch))
        else:
            model, step, kernels = hone_setup(spec, device)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        else:
            Path("/proc/self/clear_refs").write_text("5")  # the peak RSS mark starts again from here
        losses, times, flops, tokens = [], [], 0, 0
        for index, rows in enumerate(steps):
            sync(device)
            started = time.perf_counter()
            losses.append(step(rows))
            sync(device)
            if not math.isfinite(losses[-1]):
                return {**spec, "note": f"loss is {losses[-1]} at step {index + 1}"}
            if index >= spec["warmup"]:
                times.append(time.perf_counter() - started)
                n = sum(len(e.input_ids) for row in rows for e in row)
                tokens += n
                flops += training_flops(model, n, [len(e.input_ids) for row in rows for e in row],
                                        hidden=shape["hidden_size"], layers=shape["num_hidden_layers"])
    seconds = sum(times)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
    else:  # VmHWM, in KiB
        peak = int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM:")).split()[1]) / 2**20
    return {**spec, "kernels_used": kernels, "losses": losses, "tokens_per_s": tokens / seconds,
            "step_s": seconds / len(times), "peak_gib": peak, "tflops": flops / seconds / 1e12,
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad), "note": ""}


def run_in_process(spec: dict) -> dict:
    """`run_row` in a fresh Python process; a failure (out of memory, a missing package) is the row's note."""
    command = [sys.executable, __file__, "--row", json.dumps(spec)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=ROW_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {**spec, "note": f"timed out after {ROW_TIMEOUT_S} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("ROW "):
            return json.loads(line[4:])
    error = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return {**spec, "note": "failed: " + (error[-1][:200] if error else f"exit status {done.returncode}")}


# ---------------------------------------------------------------- the table

def plan(args, fused: list[str]) -> list[dict]:
    """Every row of the run: (1.1B) eager, fused and peer per method; (8B) LoRA and QLoRA, checkpointing
    off and on."""
    base = dict(device=args.device, precision="bf16", rank=args.rank, loss_chunk=args.loss_chunk,
                steps=args.steps, warmup=args.warmup)
    rows = []
    if args.part in ("all", "1b"):
        one = dict(base, shape="tiny" if args.tiny else "1b", seq_len=args.seq_len, rows=args.rows,
                   checkpointing=False, table="1b")
        for method in args.methods.split(","):
            rows.append(dict(one, system="hone", method=method, kernels="none", column="eager"))
            for kernels in (k for k in fused if k != "none"):
                rows.append(dict(one, system="hone", method=method, kernels=kernels, column=f"kernels={kernels}"))
            if args.peer:
                rows.append(dict(one, system="peer", method=method, kernels="none", column="peer"))
    if args.part in ("all", "8b"):
        eight = dict(base, shape="tiny-8b" if args.tiny else "8b", seq_len=args.seq_len, rows=1, table="8b",
                     steps=min(args.steps, 6), warmup=min(args.warmup, 2))
        for method in ("lora", "qlora"):
            for checkpointing in (False, True):
                rows.append(dict(eight, system="hone", method=method, kernels=fused[0], column="hone",
                                 checkpointing=checkpointing))
    return rows


def cell(row: dict | None, mfu_of) -> str:
    if row is None:
        return ""
    if "tokens_per_s" not in row:
        return row["note"]
    return f"{row['tokens_per_s']:,.0f} tok/s, MFU {mfu_of(row):.1%}, {row['peak_gib']:.1f} GiB"


def loss_match(eager: dict | None, fused: list[dict | None]) -> tuple[str, bool]:
    """The worst per-step relative difference of each fused row's losses from the eager row's."""
    said, ok = [], True
    for row in fused:
        if not eager or not row or "losses" not in eager or "losses" not in row:
            continue
        worst = max(abs(a - b) / abs(a) for a, b in zip(eager["losses"], row["losses"]))
        ok &= worst <= LOSS_TOLERANCE
        said.append(f"{row['kernels']}: {worst:.1e} {'ok' if worst <= LOSS_TOLERANCE else 'FAIL'}")
    return "; ".join(said), ok


def fastest(rows: list[dict | None]) -> dict | None:
    measured = [r for r in rows if r and "tokens_per_s" in r]
    return max(measured, key=lambda r: r["tokens_per_s"]) if measured else None


def ratio(a: dict | None, b: dict | None, key: str) -> float | None:
    if not a or not b or key not in a or key not in b or not b[key]:
        return None
    return a[key] / b[key]


def render(results: dict, tiny: bool) -> tuple[str, bool]:
    """docs/gpu.md from the saved results; False when a fused row's losses left the eager row's."""
    meta = results["meta"]
    peak = meta["matmul_tflops"]

    def mfu(row):
        return row["tflops"] / peak

    rows = results["rows"]
    find = {(r["table"], r["method"], r["column"], r.get("checkpointing", False)): r for r in rows}
    shape1 = SHAPES["tiny" if tiny else "1b"]
    lines = ["# hone on a GPU", ""]
    if tiny:
        lines += ["**The figures await a GPU run.** What follows is the CPU `--tiny` output of `bench/gpu.py`: a proof "
                  "that the code path runs end to end (tiny random models, a few steps, peak memory as the process's RSS), "
                  "**not a measurement** of anything. On a GPU the same command without `--device cpu --tiny` rewrites "
                  "this page with the real table.", ""]
    lines += [f"Written by `{meta['command']}` on {meta['when']}.", "",
              f"{meta['device_name']}; torch {meta['torch']}, transformers {meta['transformers']}, peft {meta['peft']}; "
              f"measured dense bf16 matmul {peak:.3g} TFLOP/s (the MFU denominator). `train.kernels="
              f"{meta['kernels_choice']}` resolved to `{meta['fused'][0]}` here. Checks: bf16 vs fp32 training of the tiny "
              f"model, worst loss difference {meta['check']['worst_rel_diff']:.1e} "
              f"({'ok' if meta['check']['ok'] else 'FAIL'}); packed attention ({meta['check']['attention_kernel']}) vs a "
              f"dense mask {meta['check']['segment_vs_dense_rel']:.1e}; full fine-tuning's fp32 queries under bf16 "
              f"autocast take the `{meta['check']['full_ft_attention']}` path.", ""]
    ok = True
    if any(r["table"] == "1b" for r in rows):
        lines += [f"## LoRA, QLoRA and full fine-tuning, hone against a plain transformers + PEFT loop", "",
                  f"Random Llama (hidden {shape1['hidden_size']}, {shape1['num_hidden_layers']} layers, "
                  f"{shape1['num_attention_heads']}/{shape1['num_key_value_heads']} heads, intermediate "
                  f"{shape1['intermediate_size']}, vocab {shape1['vocab_size']}), {meta['rows']} rows x {meta['seq_len']} "
                  f"tokens a step, bf16 autocast, LoRA r {meta['rank']} on all linear layers, "
                  f"{meta['steps'] - meta['warmup']} timed steps after {meta['warmup']}.", "",
                  "| method | hone `kernels=none` (eager) | " + " | ".join(f"hone `kernels={k}`" for k in meta["fused"])
                  + " | plain transformers + PEFT | fastest hone/peer tokens/s | its peak memory/peer's | fused vs eager "
                  "loss |", "|---|---|" + "---|" * len(meta["fused"]) + "---|---:|---:|---|"]
        for method in meta["methods"]:
            eager, peer = find.get(("1b", method, "eager", False)), find.get(("1b", method, "peer", False))
            fused = [find.get(("1b", method, f"kernels={k}", False)) for k in meta["fused"]]
            best = fastest([eager, *fused])
            speed, memory = ratio(best, peer, "tokens_per_s"), ratio(best, peer, "peak_gib")
            match, same = loss_match(eager, fused)
            ok &= same
            lines.append(f"| {method} | {cell(eager, mfu)} | " + "".join(f"{cell(r, mfu)} | " for r in fused)
                         + f"{cell(peer, mfu)} | {f'{speed:.2f}x' if speed else ''} | "
                         f"{f'{memory:.0%}' if memory else ''} | {match} |")
        lines += ["", *([] if tiny else targets(find, mfu, meta["fused"])), ""]
    if any(r["table"] == "8b" for r in rows):
        shape8 = SHAPES["tiny-8b" if tiny else "8b"]
        lines += ["## Llama-3-8B shape: memory", "",
                  f"Random Llama of the 8B's shape (hidden {shape8['hidden_size']}, {shape8['num_hidden_layers']} layers, "
                  f"{shape8['num_attention_heads']}/{shape8['num_key_value_heads']} heads, intermediate "
                  f"{shape8['intermediate_size']}, vocab {shape8['vocab_size']}), one row of {meta['seq_len']} tokens a "
                  f"step, bf16, LoRA r {meta['rank']} on all linear layers, `kernels={meta['fused'][0]}`.", "",
                  "| method | activation checkpointing | tokens/s | peak GiB | MFU | note |", "|---|---|---:|---:|---:|---|"]
        for method in ("lora", "qlora"):
            for checkpointing in (False, True):
                r = find.get(("8b", method, "hone", checkpointing))
                if r is None:
                    continue
                if "tokens_per_s" in r:
                    lines.append(f"| {method} | {'on' if checkpointing else 'off'} | {r['tokens_per_s']:,.0f} | "
                                 f"{r['peak_gib']:.1f} | {mfu(r):.1%} | |")
                else:
                    lines.append(f"| {method} | {'on' if checkpointing else 'off'} | | | | {r['note']} |")
        lines += ["", PUBLISHED, ""]
    lines += [HOW_TO_RUN]
    return "\n".join(lines) + "\n", ok


def targets(find, mfu, fused: list[str]) -> list[str]:
    """The targets of hone on a GPU, each with its measured value (hone's fastest kernels)."""
    def get(method, column):
        r = find.get(("1b", method, column, False))
        return r if r and "tokens_per_s" in r else None

    def best(method):
        return fastest([get(method, "eager")] + [get(method, f"kernels={k}") for k in fused])

    out = ["Targets (H100/H200):"]
    lora, peer = best("lora"), get("lora", "peer")
    if lora and peer:
        s, m = ratio(lora, peer, "tokens_per_s"), ratio(lora, peer, "peak_gib")
        out.append(f"- LoRA >= 2.0x the peer's tokens/s at <= 60 % of its memory, MFU >= 55 %: {s:.2f}x, {m:.0%}, "
                   f"{mfu(lora):.1%} -> {'met' if s >= 2 and m <= 0.6 and mfu(lora) >= 0.55 else 'not met'}")
    full, peer = best("full"), get("full", "peer")
    if full and peer:
        s, m = ratio(full, peer, "tokens_per_s"), ratio(full, peer, "peak_gib")
        out.append(f"- Full >= 1.15x the peer's tokens/s at no more memory: {s:.2f}x, {m:.0%} -> "
                   f"{'met' if s >= 1.15 and m <= 1 else 'not met'}")
    qlora = best("qlora")
    if qlora and lora:
        s = ratio(qlora, lora, "tokens_per_s")
        out.append(f"- QLoRA >= 0.8x hone LoRA's tokens/s: {s:.2f}x -> {'met' if s >= 0.8 else 'not met'}")
    return out if len(out) > 1 else []


PUBLISHED = """Published figures for the same model class (other setups, other GPUs: for orientation, not a
like-for-like comparison):

| source | setting | peak memory | tokens/s |
|---|---|---:|---:|
| torchtune README, "Memory and training speed" ([github.com/pytorch/torchtune](https://github.com/pytorch/torchtune#memory-and-training-speed)) | Llama 3.1 8B LoRA, 1x RTX 4090, batch 2, packed to 2048, torch.compile | 16.2 GiB | 3,083 |
| same | Llama 3.1 8B LoRA, 1x A6000, same setting | 30.3 GiB | 4,699 |
| same | Llama 3.1 8B QLoRA, 1x RTX 4090, same setting | 7.4 GiB | 2,413 |
| Unsloth benchmarks ([docs.unsloth.ai/basics/unsloth-benchmarks](https://docs.unsloth.ai/basics/unsloth-benchmarks)) | Llama 3.1 8B Instruct QLoRA r 32 on all linear layers, batch 1, padded sequences: the longest context that fits | 2,972 tokens fit in 8 GB (21,848 in 12 GB); Hugging Face + FA2: out of memory at 8 GB | |
| Unsloth, Llama 3 blog ([unsloth.ai/blog/llama3](https://unsloth.ai/blog/llama3)) | Llama-3 8B QLoRA r 32 on all linear layers, Alpaca, batch 2, grad. accumulation 4, 1x L4 24 GB | 63 % less than Hugging Face + FA2 | 2x Hugging Face + FA2 |"""

HOW_TO_RUN = """## Running it

On the GPU machine (an image with Python 3.12, torch, transformers, peft and triton), hone needs these
wheels beside its source. Download them on a machine with the package index, into an ignored folder
`.whl/` of the checkout (48 MB; bitsandbytes and torchao are tagged manylinux_2_24/2_28):

```sh
pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
    --platform manylinux2014_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_28_x86_64 \\
    -d .whl pydantic==2.14.4 pydantic_core==2.50.5 \\
    annotated-types==0.8.0 typing-inspection==0.4.5 bitsandbytes==0.50.2 torchao==0.18.0 \\
    liger-kernel==0.8.5
```

Then, on the GPU machine, in the checkout (one command; about 8 minutes on an H200, estimated):

```sh
pip install --no-index --no-deps --target /tmp/site .whl/*.whl && \\
    PYTHONPATH=/tmp/site:$PWD/src python3 bench/gpu.py --peer
```

Through a lent device machine that runs one command in a copy of the checkout, the same with `.whl`
carried and the two files sent back: `carry: [".whl"]`, command `pip install --no-index --no-deps
--target /tmp/site .whl/*.whl && PYTHONPATH=/tmp/site:$PWD/src python3 bench/gpu.py --peer; cp
docs/gpu.md docs/gpu.json "$OUT"/`. Where one command may run 10 minutes at most, run `--part 1b`
and `--part 8b` as two commands: each part updates its own rows of docs/gpu.json and rewrites this
page from all of them. `--kernels liger,compile --part 1b` puts both kinds of fused kernels side by
side. Without liger-kernel, `kernels=auto` compiles the layers instead (slower to start: the first
steps pay the compilation). The CPU proof of the path: `python bench/gpu.py --device cpu --tiny --peer --out /tmp/gpu.md`."""


def measure_checks(args, device) -> dict:
    check = check_bf16_against_fp32(args.device, steps=3 if args.tiny else 10)
    print(f"bf16 vs fp32 (tiny model): worst relative loss difference {check['worst_rel_diff']:.2e} -> "
          f"{'ok' if check['ok'] else 'FAIL'}; packed attention ({check['attention_kernel']}) vs dense mask: "
          f"{check['segment_vs_dense_rel']:.2e} -> {'ok' if check['attention_ok'] else 'FAIL'}; full fine-tuning's "
          f"attention path: {check['full_ft_attention']}", flush=True)
    loss = check_chunked_loss(device)
    print(f"chunked cross-entropy, 16384 tokens x 32000 vocabulary: peak {loss['loss_peak_gib']:.2f} GiB above "
          f"its inputs (full fp32 logits alone would be {loss['logits_gib']:.2f} GiB)", flush=True)
    return check


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny models and few steps (a proof of the code path)")
    parser.add_argument("--peer", action="store_true", help="also run the plain transformers + PEFT loop")
    parser.add_argument("--part", choices=("all", "1b", "8b"), default="all")
    parser.add_argument("--methods", default="lora,qlora,full")
    parser.add_argument("--kernels", default="auto",
                        help="train.kernels of the fused columns, comma-separated (auto | liger | compile)")
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--rows", type=int, default=8, help="rows of seq-len tokens per step (1.1B table)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--loss-chunk", type=int, default=4096)
    parser.add_argument("--out", help="markdown file (default docs/gpu.md, none with --tiny)")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # internal: one row, in a child process
    args = parser.parse_args()
    if args.row:
        print("ROW " + json.dumps(run_row(json.loads(args.row))), flush=True)
        return 0
    if args.tiny:
        args.seq_len, args.rows, args.steps, args.warmup = min(args.seq_len, 256), 2, 3, 1
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here; run with --device cpu --tiny for a proof of the code path", file=sys.stderr)
        return 2
    from hone.train.kernels import resolve_kernels

    # on a CPU `auto` is eager; the --tiny proof compiles instead, so that the fused column's path runs too
    choice = "compile" if device.type == "cpu" and args.kernels == "auto" and args.tiny else args.kernels
    fused = [resolve_kernels(k, device.type, "llama") for k in choice.split(",")]
    fused = [k for k in dict.fromkeys(fused) if k != "none"] or ["none"]
    check = measure_checks(args, device)
    peak = matmul_tflops(device, size=1024 if args.tiny else 8192, repeats=3 if args.tiny else 50)
    print(f"dense bf16 matmul: {peak:.3g} TFLOP/s; fused kernels: {fused}", flush=True)
    results_path = Path(args.out).with_suffix(".json") if args.out else Path("docs/gpu.json")
    old = json.loads(results_path.read_text()) if results_path.is_file() and not args.tiny else {"rows": []}
    if old.get("meta", {}).get("tiny"):
        old = {"rows": []}
    rows = []
    for spec in plan(args, fused):
        row = run_in_process(spec)
        rows.append(row)
        print(f"{row['table']} {row['method']} {row['column']}{' checkpointing' if row['checkpointing'] else ''}: "
              + (f"{row['tokens_per_s']:,.0f} tok/s, {row['peak_gib']:.2f} GiB, {row['tflops']:.1f} TFLOP/s"
                 if "tokens_per_s" in row else row["note"]), flush=True)
    done = {r["table"] for r in rows}
    import peft
    import transformers

    results = {"meta": {"command": "python3 bench/gpu.py " + " ".join(sys.argv[1:]),
                        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
                        else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
                        "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                        "matmul_tflops": peak, "kernels_choice": choice, "fused": fused, "check": check,
                        "methods": args.methods.split(","), "rows": args.rows, "seq_len": args.seq_len,
                        "rank": args.rank, "steps": args.steps, "warmup": args.warmup, "tiny": args.tiny},
               "rows": [r for r in old["rows"] if r["table"] not in done] + rows}
    text, losses_ok = render(results, args.tiny)
    print(text)
    out = args.out or (None if args.tiny else "docs/gpu.md")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
        if not args.tiny:  # the figures the next --part merges with
            results_path.write_text(json.dumps(results, indent=1) + "\n")
    return 0 if check["ok"] and check["attention_ok"] and losses_ok else 1


if __name__ == "__main__":
    sys.exit(main())
