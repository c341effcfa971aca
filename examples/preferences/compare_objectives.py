"""Train DPO, KTO, ORPO and SimPO on the same pairs and budget; score each on held-out pairs.

    python examples/preferences/compare_objectives.py --model smollm2-135m-instruct \
        --train examples/preferences/concise_train.jsonl --heldout examples/preferences/concise_heldout.jsonl \
        --steps 10 train.lr=1e-3 train.batch_size=4

For the base model and each tuned one, on every held-out pair: the mean token log-prob of the
chosen and of the rejected reply. Printed: how often the chosen reply is the likelier one, the mean
margin between them, and the chosen reply's mean token NLL (how well the preferred answer itself is
learnt). KTO trains on the pairs as desirable/undesirable completions. With `--bare-json N`, also the
behaviour the pairs prefer: how many greedy answers (96 new tokens) to the first N held-out prompts
are one bare JSON object (as `measure_concise.py`).
"""

import argparse
import json
from pathlib import Path

import torch

from hone.api import generate, train
from hone.data.batching import Batching
from hone.data.config import DataConfig
from hone.data.pairs import pair_batches, prepare_pairs
from hone.examples.preferences import is_concise
from hone.methods.tuned import load_tuned
from hone.models.load import load_model
from hone.objectives.dpo import sequence_log_probs


def held_out_scores(model, tokenizer, heldout: str) -> dict:
    pairs = prepare_pairs(DataConfig(train=heldout, validation_fraction=0), tokenizer, seed=0, objective="dpo").train
    means = []
    model.eval()
    with torch.no_grad():
        for batch in pair_batches(pairs, Batching(tokenizer.pad_token_id)):
            sums, counts = sequence_log_probs(model, batch, 1024)
            means.append(sums / counts.clamp(min=1))
    means = torch.cat(means)
    chosen, rejected = means[0::2], means[1::2]
    return {"chosen_likelier": (chosen > rejected).float().mean().item(),
            "margin": (chosen - rejected).mean().item(), "chosen_nll": -chosen.mean().item()}


def bare_json(heldout: str, limit: int, **model) -> float:
    """The share of greedy answers to the first `limit` held-out prompts that are one bare JSON object."""
    prompts = [json.loads(line)["messages"] for line in Path(heldout).read_text().splitlines()][:limit]
    replies = generate(prompts, max_new_tokens=96, **model)
    return sum(map(is_concise, replies)) / len(replies)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--train", required=True)
    parser.add_argument("--heldout", required=True)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--objectives", default="dpo,kto,orpo,simpo")
    parser.add_argument("--output-dir", default="runs/compare-objectives")
    parser.add_argument("--bare-json", type=int, default=0, metavar="N",
                        help="also count bare-JSON greedy answers to the first N held-out prompts")
    parser.add_argument("overrides", nargs="*", help="hone config overrides for every run, e.g. train.lr=1e-3")
    args = parser.parse_args()
    model, tokenizer, _ = load_model(args.model)
    rows = {"base": held_out_scores(model, tokenizer, args.heldout)}
    if args.bare_json:
        rows["base"]["bare_json"] = bare_json(args.heldout, args.bare_json, model=args.model)
    print("base", json.dumps(rows["base"]), flush=True)
    for objective in args.objectives.split(","):
        run_dir = Path(args.output_dir) / objective
        if not (run_dir / "adapter").exists():  # an interrupted comparison continues where it stopped
            train(None, [f"model={args.model}", f"data.train={args.train}", f"data.validation={args.heldout}",
                         f"objective={objective}", f"name={objective}", f"output_dir={args.output_dir}",
                         f"train.max_steps={args.steps}", "train.save_every=null", *args.overrides],
                  progress=False, log=lambda *a: None)
        tuned, tokenizer, _ = load_tuned(run_dir)
        rows[objective] = held_out_scores(tuned, tokenizer, args.heldout)
        if args.bare_json:
            rows[objective]["bare_json"] = bare_json(args.heldout, args.bare_json, adapter=run_dir)
        print(objective, json.dumps(rows[objective]), flush=True)
    behaviour = f" bare-JSON answers ({args.bare_json} prompts) |" if args.bare_json else ""
    print(f"| model | chosen likelier | margin (mean log-prob) | chosen NLL |{behaviour}\n|---|---:|---:|---:|"
          + "---:|" * bool(args.bare_json))
    for name, row in rows.items():
        bare = f" {row['bare_json']:.0%} |" if args.bare_json else ""
        print(f"| {name} | {row['chosen_likelier']:.0%} | {row['margin']:+.3f} | {row['chosen_nll']:.3f} |{bare}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
