"""How often are greedy answers to the held-out prompts bare JSON, for the base model and a DPO run?

    python examples/preferences/measure_concise.py runs/dpo-concise [--limit 50]
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
    args = parser.parse_args()
    prompts = [json.loads(line)["messages"] for line in open(args.heldout)][: args.limit]
    manifest = json.load(open(f"{args.run}/adapter/hone.json"))
    for label, kwargs in (("base", {"model": manifest["base_model"]["id"]}), ("dpo", {"adapter": args.run})):
        replies = generate(prompts, max_new_tokens=96, **kwargs)
        rate = sum(map(is_concise, replies)) / len(replies)
        print(f"{label}: {rate:.1%} of {len(replies)} held-out answers are bare JSON; e.g. {replies[0][:100]!r}")


if __name__ == "__main__":
    main()
