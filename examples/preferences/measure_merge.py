"""Does a merge keep each run's task? Two LoRA runs on the default model, merged by `hone merge`,
each task scored for the merge and for each run alone.

    python examples/preferences/measure_merge.py runs/pizza-sft12 runs/compare-objectives/dpo \
        --methods linear,ties --orders 50

Task A (the first run, e.g. a short pizza SFT): the pizza grader's score (0.8 x fields + 0.2 x
schema) of greedy replies to the first `--orders` held-out orders. Task B (the second run, e.g.
DPO on the concise pairs): the mean margin by which the preferred reply of each held-out pair is
likelier than the rejected one (mean token log-prob), as `compare_objectives.py` measures it. The
base's margin is measured too; its pizza score is 0 (it writes no JSON for the bare task prompt).
"""

import argparse
import json
import tempfile
from pathlib import Path

from compare_objectives import held_out_scores

from hone.api import evaluate
from hone.export.merge_runs import merge_runs
from hone.methods.tuned import load_tuned
from hone.models.load import load_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_a")
    parser.add_argument("run_b")
    parser.add_argument("--methods", default="linear,ties")
    parser.add_argument("--orders", type=int, default=50)
    parser.add_argument("--pizza", default="examples/pizza/heldout.jsonl")
    parser.add_argument("--grader", default="examples/pizza/grader.json")
    parser.add_argument("--pairs", default="examples/preferences/concise_heldout.jsonl")
    parser.add_argument("--output-dir", default="runs/merges")
    args = parser.parse_args()
    orders = Path(tempfile.mkdtemp()) / "orders.jsonl"
    orders.write_text("".join(Path(args.pizza).read_text().splitlines(keepends=True)[: args.orders]))
    base_model = json.loads((Path(args.run_a) / "adapter" / "hone.json").read_text())["base_model"]["id"]

    model, tokenizer, _ = load_model(base_model)
    rows = {"base": {"pizza": 0.0, "margin": held_out_scores(model, tokenizer, args.pairs)["margin"]}}
    print("base", json.dumps(rows["base"]), flush=True)
    candidates = {"A alone": args.run_a, "B alone": args.run_b}
    for method in args.methods.split(","):
        out = Path(args.output_dir) / method
        if not out.exists():
            merge_runs([args.run_a, args.run_b], out, method=method)
        candidates[f"{method} merge"] = out
    for name, adapter in candidates.items():
        pizza = evaluate(orders, adapter=adapter, grader=args.grader, max_new_tokens=96, progress=False)
        tuned, tokenizer, _ = load_tuned(adapter)
        rows[name] = {"pizza": pizza.metrics["grader_score"], "margin": held_out_scores(tuned, tokenizer, args.pairs)["margin"]}
        print(name, json.dumps(rows[name]), flush=True)

    a, b, base = rows["A alone"], rows["B alone"], rows["base"]
    print(f"| model | pizza grader ({args.orders} orders) | kept of A's gain | pair margin | kept of B's gain |")
    print("|---|---:|---:|---:|---:|")
    for name, row in rows.items():
        kept_a = (row["pizza"] - base["pizza"]) / (a["pizza"] - base["pizza"])
        kept_b = (row["margin"] - base["margin"]) / (b["margin"] - base["margin"])
        print(f"| {name} | {row['pizza']:.1%} | {kept_a:.0%} | {row['margin']:+.3f} | {kept_b:.0%} |")


if __name__ == "__main__":
    main()
