"""Train every GRPO loss variant on the same budget from the same SFT start; score each on held-out orders.

    hone train examples/pizza/config.yaml --preset demo train.max_steps=12 name=pizza-sft12 forgetting.enabled=false
    OMP_NUM_THREADS=1 python examples/pizza/compare_grpo.py --start runs/pizza-sft12 --steps 20 train.threads=1

Each variant starts from `grpo.yaml` with the settings a loss shapes (clip range, normalisation, reward
scaling, dynamic sampling, overlong buffer) removed, so every loss runs with its own defaults; the rest
(2 prompts x 8 replies, temperature 0.7, lr 2e-4, beta 0.04) is the same for all. No validation during
training. A variant whose run directory already holds an adapter is scored, not retrained, so an
interrupted comparison continues where it stopped.

Printed, per adapter: the grader score of greedy replies to the held-out orders (the training grader:
0.8 x fields + 0.2 x schema), fields right, schema-valid, JSON valid, exact match; and per variant the
training health read from its metrics.jsonl: mean sampled reward over the first and last 5 steps, mean
fraction of groups with all-equal rewards, entropy, clip fraction, dropped groups, KL and seconds a step.
"""

import argparse
import json
import tempfile
from pathlib import Path

import yaml

from hone.api import evaluate, train
from hone.objectives.grpo import LOSS_DEFAULTS, LOSSES
from hone.rewards.metric import score

HERE = Path(__file__).parent
# The settings each loss gives a default to; grpo.yaml fixes some of them for its own run.
SHAPED = {*next(iter(LOSS_DEFAULTS.values())), "clip_eps", "overlong_buffer"}


def variant_config(loss: str) -> dict:
    config = yaml.safe_load((HERE / "grpo.yaml").read_text())
    config["objective"] = {k: v for k, v in config["objective"].items() if k not in SHAPED} | {"loss": loss}
    return config


def held_out(path: str, limit: int | None) -> str:
    """The held-out file, or a temporary file of its first `limit` records."""
    if not limit:
        return path
    lines = Path(path).read_text().splitlines()[:limit]
    out = Path(tempfile.mkdtemp()) / f"heldout-{limit}.jsonl"
    out.write_text("\n".join(lines) + "\n")
    return str(out)


def scores(adapter: str, heldout: str) -> dict:
    result = evaluate(heldout, adapter=adapter, grader=str(HERE / "grader.json"), max_new_tokens=96,
                      batch_size=25, progress=False)
    parts = {name: sum(g.details[name]["score"] for g in result.grades) / len(result.grades)
             for name in ("fields", "schema")}
    references = [item.reference for item in result.items]
    return {**result.metrics, **parts, **score("json", result.predictions, references)}


def health(run_dir: Path) -> dict:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "reward" in r and "zero_std_fraction" in r]  # training steps only

    def mean(key, part=rows):
        values = [r[key] for r in part if key in r]
        return sum(values) / len(values) if values else float("nan")

    return {"steps": len(rows), "reward_first5": mean("reward", rows[:5]), "reward_last5": mean("reward", rows[-5:]),
            **{k: mean(k) for k in ("zero_std_fraction", "entropy", "clip_fraction", "dropped_groups", "kl",
                                    "seconds", "completion_length")}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--start", default="runs/pizza-sft12", help="the SFT run every variant starts from")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--losses", default=",".join(LOSSES))
    parser.add_argument("--heldout", default=str(HERE / "heldout.jsonl"))
    parser.add_argument("--limit", type=int, default=None, help="score only the first N held-out orders")
    parser.add_argument("--output-dir", default="runs/compare-grpo")
    parser.add_argument("overrides", nargs="*", help="hone config overrides for every run, e.g. train.threads=1")
    args = parser.parse_args()
    heldout = held_out(args.heldout, args.limit)
    rows, healths = {"start": scores(args.start, heldout)}, {}
    print("start", json.dumps(rows["start"]), flush=True)
    for loss in args.losses.split(","):
        run_dir = Path(args.output_dir) / loss
        if not (run_dir / "adapter").exists():
            train(variant_config(loss), [f"method.init_from={args.start}", f"name={loss}",
                                         f"output_dir={args.output_dir}", f"train.max_steps={args.steps}",
                                         "data.validation=null", "data.validation_fraction=0", "eval.file=null",
                                         "train.save_every=null", *args.overrides], progress=False, log=lambda *a: None)
        rows[loss], healths[loss] = scores(str(run_dir), heldout), health(run_dir)
        print(loss, json.dumps(rows[loss]), json.dumps(healths[loss]), flush=True)
    n = rows["start"]["n"]
    print(f"\nheld-out orders: {n}\n| adapter | grader score | fields right | schema-valid | JSON valid | exact match |"
          "\n|---|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        print(f"| {name} | {row['grader_score']:.1%} | {row['fields']:.1%} | {row['schema']:.0%} | {row['json_valid']:.0%} "
              f"| {row['exact_match']:.0%} |")
    print("\n| loss | reward, steps 1-5 | reward, last 5 | zero-std groups | entropy | clip fraction | dropped groups "
          "| KL | reply tokens | s/step |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for loss, h in healths.items():
        print(f"| {loss} | {h['reward_first5']:.3f} | {h['reward_last5']:.3f} | {h['zero_std_fraction']:.2f} "
              f"| {h['entropy']:.3f} | {h['clip_fraction']:.4f} | {h['dropped_groups']:.2f} | {h['kl']:.3f} "
              f"| {h['completion_length']:.1f} | {h['seconds']:.1f} |")


if __name__ == "__main__":
    main()
