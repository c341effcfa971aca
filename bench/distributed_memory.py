"""Per-process memory under several processes: `hone estimate --nproc N` against the measured peak.

    .venv/bin/python bench/distributed_memory.py [--nproc 2] [--layers 12] [--hidden 512] [--methods full,lora]

For each strategy (one process, ddp and fsdp over N gloo processes on this CPU) and method, a
randomly initialised tiny Llama (`--layers` x `--hidden`) trains 2 steps under torchrun; every
process records its peak RSS above its own baseline after the imports (VmHWM after clear_refs, with
glibc's mmap threshold fixed as in the estimate's docstring). The table puts the largest of them next
to the estimate's per-process total.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, os, sys
import torch, transformers, peft
import torch.distributed.fsdp, torch.nn.parallel  # the imports a run makes count in the baseline
from hone.api import train
from hone.train.estimate import peak_rss, reset_peak_rss

baseline = reset_peak_rss()
train(None, sys.argv[1:], progress=False, log=lambda *a: None)
with open(os.path.join(os.environ["PEAK_DIR"], f"rank{os.environ.get('RANK', 0)}.json"), "w") as f:
    json.dump({"used": peak_rss() - baseline}, f)
"""


def measure(overrides: list[str], nproc: int, workdir: Path) -> int:
    """The largest per-process peak RSS (bytes above baseline) of a 2-step run with `nproc` processes."""
    peaks = workdir / "peaks"
    shutil.rmtree(peaks, ignore_errors=True)
    peaks.mkdir()
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "OMP_NUM_THREADS": "1", "PEAK_DIR": str(peaks),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                          os.environ.get("PYTHONPATH", "")])}
    script = workdir / "child.py"
    script.write_text(CHILD)
    launch = [sys.executable, str(script)] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", str(script)]
    out = subprocess.run([*launch, *overrides], capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(out.stdout[-2000:] + out.stderr[-4000:])
    return max(json.loads(path.read_text())["used"] for path in peaks.iterdir())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--methods", default="full,lora")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args()

    from pydoc_data.topics import topics

    import hone
    from hone.models.tiny import save_tiny_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = save_tiny_model(tmp / "model", layers=args.layers, hidden=args.hidden)
        words = " ".join(topics.values()).split()
        data = tmp / "long.jsonl"  # every example fills max_length
        with data.open("w") as f:
            for i in range(32):
                f.write(json.dumps({"text": " ".join(words[i * 400:(i + 1) * 400])}) + "\n")
        for method in args.methods.split(","):
            for strategy, nproc in (("none", 1), ("ddp", args.nproc), ("fsdp", args.nproc)):
                overrides = [f"model={model_dir}", f"data.train={data}", f"method={method}",
                             f"data.max_length={args.max_length}", f"train.batch_size={args.batch_size}",
                             "train.max_steps=2", "data.validation_fraction=0", "train.threads=1",
                             "train.memory_check=false", f"train.distributed={strategy}",
                             f"output_dir={tmp / 'runs'}", f"name={method}-{strategy}"]
                estimate = hone.estimate(None, overrides, calibration_steps=0, processes=nproc, log=lambda *a: None)
                row = estimate.methods[0]
                used = measure(overrides, nproc, tmp)
                rows.append((method, strategy if nproc > 1 else "one process", nproc, row, used))
                print(f"{method} {strategy}: estimate {row.memory / 2**20:.1f} MiB, measured {used / 2**20:.1f} MiB",
                      flush=True)
    print(f"\nTiny Llama {args.layers} layers x hidden {args.hidden}, {args.batch_size} x {args.max_length} tokens "
          "per micro-batch, fp32, 2 steps; MiB per process (the largest of the processes):\n")
    print("| method | strategy | processes | weights | gradients | optimizer | activations | estimate | "
          "measured peak RSS | measured / estimate |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    mib = 2**20
    for method, strategy, nproc, row, used in rows:
        print(f"| {method} | {strategy} | {nproc} | {row.weights / mib:.1f} | {row.gradients / mib:.1f} | "
              f"{row.optimizer / mib:.1f} | {row.activations / mib:.1f} | {row.memory / mib:.1f} | "
              f"{used / mib:.1f} | {used / row.memory:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
