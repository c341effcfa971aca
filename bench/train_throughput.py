"""Real trained tokens/s (padding excluded) and peak RSS of LoRA SFT on the default model.

    .venv/bin/python bench/train_throughput.py [--steps 10] [--max-length 512] [--batch-tokens 4096]
                                               [--modes fp32-packed,fp32-unpacked,bf16-packed]

Runs each mode (fp32 with packing, fp32 without packing, and bf16 autocast with packing where
the CPU has bf16 instructions) in its own process over the same fixed, seeded, variable-length
chat dataset (real English from Python's bundled documentation), skips the first two warm-up
steps, and prints a table. Target on 2 CPU cores: >= 300 real tokens/s at max length 512.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from hone.train.precision import cpu_has_fast_bf16


def make_dataset(path: Path, n: int, seed: int = 0) -> None:
    """Chat examples whose lengths spread from ~40 to ~500 tokens; the assistant turn is the longer part."""
    from pydoc_data.topics import topics

    words = " ".join(topics.values()).split()
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(n):
            total = rng.randint(30, 340)  # words; ~1.4 tokens per word
            split = rng.randint(5, max(6, total // 3))
            start = rng.randrange(len(words) - total)
            user = " ".join(words[start:start + split])
            answer = " ".join(words[start + split:start + total])
            f.write(json.dumps({"messages": [{"role": "user", "content": user},
                                             {"role": "assistant", "content": answer}]}) + "\n")


def run_one(args) -> None:
    """Child process: train, then report the metrics of the steps after warm-up, and peak RSS."""
    from hone.api import train

    overrides = [f"data.train={args.data}", f"data.max_length={args.max_length}", "data.validation_fraction=0",
                 f"data.packing={args.packing}", f"train.max_steps={args.steps}", f"output_dir={args.out}",
                 f"name=packing-{args.packing}-{args.precision}", "train.lr=1e-4",
                 f"train.precision={args.precision}"]
    overrides.append(f"train.batch_tokens={args.batch_tokens}" if args.packing == "true"
                     else f"train.batch_size={args.batch_size}")
    result = train(None, overrides, progress=False, log=lambda *_: None)
    records = [json.loads(line) for line in open(result.run_dir / "metrics.jsonl") if '"loss"' in line]
    timed = records[2:]
    tokens = sum(r["tokens"] for r in timed)
    seconds = sum(r["seconds"] for r in timed)
    rates = sorted(r["tokens_per_s"] for r in timed)
    print(json.dumps({"packing": args.packing, "precision": args.precision, "steps": len(timed), "tokens": tokens,
                      "seconds": seconds, "tokens_per_s": tokens / seconds, "median_step": rates[len(rates) // 2],
                      "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))


def matmul_gflops(dtype_name: str, size: int = 2048, repeats: int = 5) -> float:
    """This machine's matmul rate (2 threads by default), to put the tokens/s in context."""
    import time

    import torch

    from hone.models.load import set_threads

    set_threads(None)
    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch-tokens", type=int, default=4096, help="packed micro-batch budget")
    parser.add_argument("--batch-size", type=int, default=8, help="examples per micro-batch without packing")
    parser.add_argument("--modes", default="fp32-packed,fp32-unpacked,bf16-packed",
                        help="comma-separated PRECISION-packed|unpacked runs (bf16 only where the CPU has it)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--packing", default="true", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_one(args)
    modes = []
    for mode in args.modes.split(","):
        precision, _, packing = mode.partition("-")
        if precision not in ("fp32", "bf16") or packing not in ("packed", "unpacked"):
            parser.error(f"--modes: {mode!r} is not PRECISION-packed or PRECISION-unpacked (fp32 or bf16)")
        if precision == "fp32" or cpu_has_fast_bf16():
            modes.append(("true" if packing == "packed" else "false", precision))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "bench.jsonl"
        make_dataset(data, 400)
        rows = []
        for packing, precision in modes:
            cmd = [sys.executable, __file__, "--child", f"--packing={packing}", f"--precision={precision}",
                   f"--data={data}", f"--out={tmp}",
                   f"--steps={args.steps}", f"--max-length={args.max_length}",
                   f"--batch-tokens={args.batch_tokens}", f"--batch-size={args.batch_size}"]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"LoRA SFT (r16, all-linear) on smollm2-135m-instruct, max_length {args.max_length}, "
          f"{args.steps - 2} timed steps; this machine's matmul rate: fp32 {matmul_gflops('float32'):.0f}, "
          f"bf16 {matmul_gflops('bfloat16'):.0f} GFLOP/s")
    print("| packing | precision | real tokens/s (all timed steps) | median step | peak RSS GiB | tokens | seconds |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['packing']} | {r['precision']} | {r['tokens_per_s']:.0f} | {r['median_step']:.0f} | "
              f"{r['peak_rss_gib']:.2f} | {r['tokens']} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
