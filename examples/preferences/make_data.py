"""Regenerate this folder's data from the repo root: `python examples/preferences/make_data.py`.

Seeded generators in `src/hone/examples/preferences.py`, built on the pizza-order task: prompts of
different seeds for training and held-out files.
"""

from hone.examples.preferences import concise_pairs, delivery_labels, reward_pairs, write_jsonl

FILES = {
    "concise_train.jsonl": lambda: concise_pairs(300, 10, openai=True),
    "concise_heldout.jsonl": lambda: concise_pairs(50, 11),
    "reward_train.jsonl": lambda: reward_pairs(300, 20),
    "reward_heldout.jsonl": lambda: reward_pairs(60, 21),
    "delivery_train.jsonl": lambda: delivery_labels(200, 30),
    "delivery_heldout.jsonl": lambda: delivery_labels(60, 31),
}

if __name__ == "__main__":
    for name, make in FILES.items():
        print(f"wrote {write_jsonl(f'examples/preferences/{name}', make())}")
