"""GPU verification: bf16 against fp32 on a tiny model, then throughput, peak memory and MFU of LoRA,
QLoRA and full fine-tuning on a randomly initialised 1B-class Llama at sequence length 2048.

    .venv/bin/python bench/gpu.py                       # on a CUDA machine; writes docs/gpu.md
    .venv/bin/python bench/gpu.py --device cpu --tiny   # smoke check of the same code path on a CPU

Every step is hone's own: `Runtime.wrap` (device, activation checkpointing, compile), the packed
micro-batches of `collate` with segment attention (variable-length flash attention on CUDA), and
`optimizer_step` of the training loop with the chunked fused cross-entropy. Rows are fully packed
with examples of random lengths (128 to 2048 tokens), every token a target.

MFU = model FLOPs per second / this card's measured dense bf16 matmul rate (measured here, not the
datasheet's). Model FLOPs per token: forward 2 N of the matrices (the output head included); backward
2 N for input gradients, plus 2 N for weight gradients of what trains (full: all of N, LoRA: only the
adapters); attention 6 n d per layer for a token of an n-token example (causal halving counted).
Recomputation by activation checkpointing is not counted as model FLOPs. Target: LoRA MFU >= 45 %.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

ONE_B = dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
             intermediate_size=8192, vocab_size=32000)
TINY = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=256, vocab_size=512)


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
    return {"fp32": losses["fp32"], "bf16": losses["bf16"], "worst_rel_diff": worst, "ok": worst < 0.02,
            **attention}


def check_segment_attention(device) -> dict:
    """The loss of a packed bf16 batch with segment attention (varlen kernel on CUDA) vs a dense mask."""
    from hone.data.pack import collate
    from hone.models.attention import use_segment_attention, varlen_kernel
    from hone.objectives.sft import SFT
    from hone.train.distributed import Runtime

    model = random_llama(TINY, device, seed=1)
    examples = random_examples(TINY["vocab_size"], 512, random.Random(1), shortest=16, longest=256)
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
    return {"attention_kernel": kernel[0] if kernel else "sdpa per segment", "segment_vs_dense_rel": diff,
            "attention_ok": diff < 1e-2}


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


def random_llama(shape: dict, device, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**shape, max_position_embeddings=4096, tie_word_embeddings=False)
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM(config)
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


def step_flops(model, batch, shape: dict, full: bool) -> float:
    """Model FLOPs of one training step on `batch` (see the module docstring)."""
    matrices = sum(p.numel() for n, p in model.named_parameters() if p.ndim == 2 and "embed_tokens" not in n)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad and p.ndim == 2)
    tokens = int(batch["n_tokens"])
    dense = tokens * (4 * matrices + 2 * (matrices if full else trained))
    attention = 6 * shape["hidden_size"] * shape["num_hidden_layers"] * sum(
        (e - s) ** 2 for row in batch["segments"] for s, e in row)
    return dense + attention


def measure(method: str, shape: dict, args, device, peak_tflops: float) -> dict:
    """Train `steps` steps of `method` (lora | qlora | full) and time the last ones."""
    from hone.config.schema import TrainConfig
    from hone.data.pack import collate
    from hone.methods import METHODS
    from hone.models.attention import use_segment_attention
    from hone.objectives.sft import SFT
    from hone.train.distributed import Runtime
    from hone.train.step import optimizer_step
    from hone.train.optim import build_optimizer, build_scheduler
    from hone.train.precision import prepare_for_precision

    if method == "qlora" and "qlora" not in METHODS:
        return {"method": method, "note": "skipped: no qlora method in this build of hone"}
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    model = random_llama(shape, device)
    use_segment_attention(model)
    if method == "full":
        model.requires_grad_(True)
    else:
        module = METHODS[method]
        model = module.apply(model, module.Config(rank=args.rank))
    runtime = Runtime(device, args.precision)
    prepare_for_precision(model, args.precision)
    objective = runtime.wrap(model, SFT(args.loss_chunk), checkpointing=args.checkpointing, compile=args.compile)
    config = TrainConfig(lr=1e-5, max_grad_norm=1.0, schedule="constant")
    optimizer = build_optimizer(model.parameters(), config)
    scheduler = build_scheduler(optimizer, config, args.steps)
    rng = random.Random(0)
    model.train()
    times, flops, tokens = [], 0.0, 0
    for step in range(args.steps):
        batches = []
        for _ in range(args.grad_accum):
            examples, rows = [], []
            for _ in range(args.rows):  # every row exactly seq_len tokens: one shape for every step
                row = random_examples(shape["vocab_size"], args.seq_len, rng, longest=args.seq_len)
                rows.append(list(range(len(examples), len(examples) + len(row))))
                examples += row
            batches.append(collate(examples, rows, 0, mask=False))
        sync(device)
        started = time.perf_counter()
        record = optimizer_step(model, objective, batches, optimizer, scheduler, runtime, config.max_grad_norm)
        sync(device)
        if step >= args.warmup:
            times.append(time.perf_counter() - started)
            flops += sum(step_flops(model, b, shape, method == "full") for b in batches)
            tokens += record["tokens"]
        if not math.isfinite(record["loss"]):
            return {"method": method, "note": f"loss is {record['loss']} at step {step + 1}"}
    seconds = sum(times)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    del model, optimizer
    return {"method": method, "trainable": trainable, "tokens_per_step": tokens // max(len(times), 1),
            "tokens_per_s": tokens / seconds, "step_s": seconds / len(times), "peak_gib": peak,
            "tflops": flops / seconds / 1e12, "mfu": flops / seconds / 1e12 / peak_tflops, "note": ""}


def measure_safely(method: str, shape: dict, args, device, peak_tflops: float) -> dict:
    """`measure`, with a failure (out of memory, a method that cannot build) as the row's note."""
    import gc

    try:
        return measure(method, shape, args, device, peak_tflops)
    except Exception as exc:  # noqa: BLE001 - one failing method must not lose the others' figures
        return {"method": method, "note": f"failed: {type(exc).__name__}: {str(exc)[:160]}"}
    finally:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def table(results: list[dict], header: str) -> str:
    lines = [header, "", "| method | trainable params | tokens/step | tokens/s | step s | peak GiB | TFLOP/s | MFU | note |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        if "tokens_per_s" not in r:
            lines.append(f"| {r['method']} | | | | | | | | {r['note']} |")
            continue
        lines.append(f"| {r['method']} | {r['trainable'] / 1e6:,.1f}M | {r['tokens_per_step']:,} | "
                     f"{r['tokens_per_s']:,.0f} | {r['step_s']:.3f} | {r['peak_gib']:.1f} | {r['tflops']:.1f} | "
                     f"{r['mfu']:.1%} | {r['note']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a tiny model and few steps (smoke check)")
    parser.add_argument("--methods", default="lora,qlora,full")
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--rows", type=int, default=8, help="rows of seq-len tokens per micro-batch")
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--loss-chunk", type=int, default=4096)
    parser.add_argument("--checkpointing", action="store_true", help="activation checkpointing")
    parser.add_argument("--compile", action="store_true", help="torch.compile each decoder layer")
    parser.add_argument("--out", help="markdown file for the table (default docs/gpu.md unless --tiny)")
    args = parser.parse_args()
    if args.tiny:
        args.seq_len, args.rows, args.steps, args.warmup = min(args.seq_len, 256), 2, 3, 1
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here; run with --device cpu --tiny for a smoke check", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = True

    check = check_bf16_against_fp32(args.device, steps=3 if args.tiny else 10)
    print(f"bf16 vs fp32 (tiny model): worst relative loss difference {check['worst_rel_diff']:.2e} -> "
          f"{'ok' if check['ok'] else 'FAIL'}; packed attention ({check['attention_kernel']}) vs dense mask: "
          f"{check['segment_vs_dense_rel']:.2e} -> {'ok' if check['attention_ok'] else 'FAIL'}")
    peak = matmul_tflops(device, size=1024 if args.tiny else 8192, repeats=3 if args.tiny else 50)
    loss = check_chunked_loss(device)
    print(f"chunked cross-entropy, 16384 tokens x 32000 vocabulary: peak {loss['loss_peak_gib']:.2f} GiB above "
          f"its inputs (full fp32 logits alone would be {loss['logits_gib']:.2f} GiB)")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    shape = TINY if args.tiny else ONE_B
    results = [measure_safely(m, shape, args, device, peak) for m in args.methods.split(",")]
    params = sum(p.numel() for p in random_llama(shape, "meta").parameters())
    header = (f"{name}, torch {torch.__version__}; measured dense bf16 matmul {peak:.3g} TFLOP/s. Random Llama "
              f"({params / 1e9:.2f}B params: hidden {shape['hidden_size']}, {shape['num_hidden_layers']} layers, "
              f"{shape['num_attention_heads']}/{shape['num_key_value_heads']} heads, intermediate "
              f"{shape['intermediate_size']}, vocab {shape['vocab_size']}), sequence length {args.seq_len}, "
              f"{args.rows} packed rows per micro-batch, {args.precision}, LoRA r {args.rank} all-linear, "
              f"checkpointing {'on' if args.checkpointing else 'off'}, compile {'on' if args.compile else 'off'}, "
              f"{args.steps - args.warmup} timed steps. bf16 vs fp32 check: worst loss difference "
              f"{check['worst_rel_diff']:.1e} ({'ok' if check['ok'] else 'FAIL'}); packed attention "
              f"({check['attention_kernel']}) vs dense mask {check['segment_vs_dense_rel']:.1e}. Chunked cross-entropy "
              f"of 16384 tokens x 32000 vocabulary: peak {loss['loss_peak_gib']:.2f} GiB above its inputs, against "
              f"{loss['logits_gib']:.2f} GiB for the fp32 logits alone.")
    text = table(results, header)
    print(text)
    out = args.out or (None if args.tiny else "docs/gpu.md")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text("# hone on a GPU\n\nWritten by `bench/gpu.py`.\n\n" + text)
    return 0 if check["ok"] and check["attention_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
