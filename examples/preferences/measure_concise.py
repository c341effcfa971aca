"""How often are greedy answers to the held-out prompts bare JSON, for the base model and a DPO run?

    python examples/preferences/measure_concise.py runs/dpo-concise [--limit 50] [--only base|dpo]

Bare JSON is what the preference data prefers: the chosen reply is the order's JSON object and
nothing else, the rejected one the same object inside chatter (`is_concise`: the whole reply parses
as one JSON object).
"""

import argparse
import json

from hone.api import generate
from hone.examples.preferences import is_concise


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run")
    parser.add_argument("--heldout", default="examples/preferences/concise_heldout.jsonl")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--only", choices=["base", "dpo"])
    args = parser.parse_args()
    prompts = [json.loads(line)["messages"] for line in open(args.heldout)][: args.limit]
    manifest = json.load(open(f"{args.run}/adapter/hone.json"))
    for label, kwargs in (("base", {"model": manifest["base_model"]["id"]}), ("dpo", {"adapter": args.run})):
        if args.only in (None, label):
            replies = generate(prompts, max_new_tokens=args.max_new_tokens, **kwargs)
            bare = sum(map(is_concise, replies))
            print(f"{label}: {bare}/{len(replies)} = {bare / len(replies):.1%} of held-out answers are bare JSON; "
                  f"e.g. {replies[0][:100]!r}")


if __name__ == "__main__":
    main()
