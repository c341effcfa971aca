"""Every tuning method on the demo task with the same budget: what it trains, costs and scores.

    .venv/bin/python bench/methods.py [--steps 60] [--eval-limit 100] [--methods lora,full] [--out docs/bench/methods.md]

Each registered method (`hone.methods.METHODS`, with its default options) trains the demo's model
on the demo's pizza orders (`hone demo`'s preset and seeded data) for the same number of optimizer
steps, in its own process, and is scored on the same held-out orders with the JSON metric. The
table (trainable parameters, the estimate's memory, peak RSS, real trained tokens/s, wall time,
held-out scores) is printed and written to `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_one(args) -> None:
    """Child process: train one method, score it, print one JSON line."""
    from hone.api import train
    from hone.config.load import load_config
    from hone.errors import ConfigError
    from hone.train.estimate import analytical, workload_for
    from hone.models.load import resolve_model

    started = time.perf_counter()
    settings = {"method": {"type": args.method}, "data.train": args.data, "eval.file": args.heldout,
                "train.max_steps": args.steps, "train.eval_every": None, "train.save_every": None,
                "output_dir": args.runs, "name": args.method}
    if args.threads:
        settings["train.threads"] = args.threads
    settings["forgetting.enabled"] = False  # the same budget for every method: training and the task only
    try:
        config = load_config(None, settings, preset="demo")
    except ConfigError:  # prompt/prefix tuning need one example per row
        settings["data.packing"] = False
        config = load_config(None, settings, preset="demo")
    estimate = analytical(config, resolve_model(config.model), workload_for(config), args.method)
    result = train(config, progress=False, log=lambda *_: None)
    metrics = result.metrics
    print(json.dumps({
        "method": args.method, "packing": config.data.packing, "trainable": estimate.trainable, "total": estimate.total,
        "estimated_gib": estimate.memory / 2**30, "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "tokens_per_s": metrics["tokens_per_s"], "steps": metrics["steps"], "train_loss": metrics["train_loss"],
        "val_loss": metrics.get("val_loss"), "wall_s": time.perf_counter() - started,
        **{k: v for k, v in metrics.items() if k.startswith("eval_") and isinstance(v, float)},
    }))


def render(rows: list[dict], args, seconds: float) -> str:
    cores = len(os.sched_getaffinity(0))
    lines = [
        "# Tuning methods compared on the demo task",
        "",
        f"Each method (default options) trains the demo's model on the pizza orders for {args.steps} optimizer "
        f"steps (demo preset: batch 8, max length 256, lr 1e-3 cosine) in its own process and is scored on "
        f"{args.eval_limit} held-out orders (greedy, JSON metric). Measured on {platform.machine()} with "
        f"{cores} cores, {time.strftime('%Y-%m-%d')}; total {seconds / 60:.1f} min.",
        "",
        f"Reproduce: `.venv/bin/python bench/methods.py --steps {args.steps} --eval-limit {args.eval_limit}`",
        "",
        "| method | trainable params | estimated memory GiB | peak RSS GiB | real tokens/s | wall time s | "
        "train loss | json_valid | field_accuracy | exact_match |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | failed: {r['error']} |" + " |" * 8)
            continue
        lines.append(
            f"| {r['method']}{'' if r.get('packing', True) else ' (packing off)'} | {r['trainable']:,} ({r['trainable'] / r['total']:.2%}) | {r['estimated_gib']:.2f} | "
            f"{r['peak_rss_gib']:.2f} | {r['tokens_per_s']:.0f} | {r['wall_s']:.0f} | {r['train_loss']:.3f} | "
            f"{r.get('eval_json_valid', 0):.1%} | {r.get('eval_field_accuracy', 0):.1%} | {r.get('eval_exact_match', 0):.1%} |")
    lines += ["", "Peak RSS covers the whole process (model load, training, evaluation); the estimate is "
              "`hone estimate`'s analytical total for the training step (see hone.train.estimate)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    from hone.methods import METHODS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per method (the same budget)")
    parser.add_argument("--eval-limit", type=int, default=100, help="held-out orders scored (at most 100)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated (default: every registered)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the cores available)")
    parser.add_argument("--out", default="docs/bench/methods.md", help="markdown file to write ('' for none)")
    parser.add_argument("--worker", metavar="METHOD", help=argparse.SUPPRESS)
    for hidden in ("--data", "--heldout", "--runs"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.method = args.worker
        return run_one(args)
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        parser.error(f"unknown method {unknown[0]!r}; registered: {', '.join(METHODS)}")
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        from hone.examples import pizza

        train_path, heldout_path = pizza.write_dataset(Path(tmp) / "data")
        limited = Path(tmp) / "heldout.jsonl"
        limited.write_text("".join(heldout_path.read_text().splitlines(keepends=True)[:args.eval_limit]))
        for name in names:
            print(f"{name}: training {args.steps} steps ...", file=sys.stderr, flush=True)
            cmd = [sys.executable, __file__, "--worker", name, "--data", str(train_path), "--heldout", str(limited),
                   "--runs", str(Path(tmp) / "runs"), "--steps", str(args.steps)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                error = (out.stderr.strip().splitlines() or ["exit code %d" % out.returncode])[-1]
                print(f"{name}: failed: {error}", file=sys.stderr)
                rows.append({"method": name, "error": error.replace("|", "/")[:120]})
                continue
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    table = render(rows, args, time.perf_counter() - started)
    print(table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(table)
        print(f"written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
