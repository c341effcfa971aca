"""Preference and labelled data built from the pizza-order task, for DPO, reward-model and
classification examples and tests (seeded and pure, like `pizza.generate_orders`).

- `concise_pairs`: the same order answered with the bare JSON (chosen) and with the JSON wrapped in
  chatter (rejected): DPO on them should make bare answers more frequent.
- `reward_pairs`: the right JSON (chosen) against a wrong one (one field changed) or a chatty one.
- `delivery_labels`: the order text labelled `delivery` or `pickup`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from hone.examples.pizza import SIZES, SYSTEM_PROMPT, generate_orders, order_json

OPENERS = ["Sure! Here is the order as JSON:", "Of course, happy to help. The order is:",
           "Great choice! I converted your order:", "Here you go, this is the JSON for that order:"]
CLOSERS = ["Let me know if you want to change anything!", "Enjoy your pizza!",
           "Is there anything else I can help you with?", "I hope this helps."]


def chatty(answer: str, rng: random.Random) -> str:
    return f"{rng.choice(OPENERS)} {answer} {rng.choice(CLOSERS)}"


def is_concise(reply: str) -> bool:
    """A reply is concise when it is one JSON object and nothing else."""
    try:
        return isinstance(json.loads(reply), dict)
    except ValueError:
        return False


def wrong(order: dict, rng: random.Random) -> dict:
    """The order with one field changed."""
    changed = dict(order)
    field = rng.choice(["size", "quantity", "delivery"])
    if field == "size":
        changed["size"] = rng.choice([s for s in SIZES if s != order["size"]])
    elif field == "quantity":
        changed["quantity"] = order["quantity"] % 4 + 1
    else:
        changed["delivery"] = not order["delivery"]
    return changed


def concise_pairs(n: int, seed: int = 0, *, openai: bool = False) -> list[dict]:
    rng = random.Random(f"concise:{seed}")
    return [_pair(item["text"], order_json(item["order"]), chatty(order_json(item["order"]), rng), openai)
            for item in generate_orders(n, seed)]


def judged_completions(n: int, seed: int = 0) -> list[dict]:
    """Unpaired KTO records: each order gets one reply, the concise JSON (label true) or a chatty one (false)."""
    rng = random.Random(f"judged:{seed}")
    records = []
    for i, item in enumerate(generate_orders(n, seed)):
        answer = order_json(item["order"])
        good = i % 2 == 0
        records.append({"messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": item["text"]}],
                        "completion": answer if good else chatty(answer, rng), "label": good})
    return records


def reward_pairs(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(f"reward:{seed}")
    pairs = []
    for item in generate_orders(n, seed):
        right = order_json(item["order"])
        bad = order_json(wrong(item["order"], rng)) if rng.random() < 0.5 else chatty(right, rng)
        pairs.append(_pair(item["text"], right, bad, False))
    return pairs


def delivery_labels(n: int, seed: int = 0) -> list[dict]:
    return [{"text": item["text"], "label": "delivery" if item["order"]["delivery"] else "pickup"}
            for item in generate_orders(n, seed)]


def write_jsonl(path: str | Path, records: list[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def _pair(text: str, chosen: str, rejected: str, openai: bool) -> dict:
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}]
    if openai:
        return {"input": {"messages": messages}, "preferred_output": [{"role": "assistant", "content": chosen}],
                "non_preferred_output": [{"role": "assistant", "content": rejected}]}
    return {"messages": messages, "chosen": chosen, "rejected": rejected}
