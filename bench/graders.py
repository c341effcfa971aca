"""Samples graded per second by each grader family on a fixed, seeded batch of pizza-order outputs.

    .venv/bin/python bench/graders.py [--n 2000]

Outputs are the reference JSON with seeded damage (a field changed, a field dropped, broken JSON,
chatter around it), the shape an RL loop grades every step. The python grader runs a function from
this file in its worker subprocess; its rate includes starting the worker once per batch. The
judge-model grader is left out: its speed is generation speed. Target: every grader but the judge
grades at least 1,000 samples/s, so grading stays a small part of an RL step.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path


def reward_length(sample, item):
    return min(1.0, len(sample["output_text"]) / 80)


def make_batch(n: int, seed: int = 0) -> tuple[list[str], list[dict]]:
    rng = random.Random(seed)
    outputs, items = [], []
    for i in range(n):
        reference = {"size": rng.choice(["small", "large"]), "toppings": rng.sample(["ham", "olives", "onion", "basil"], 2),
                     "quantity": rng.randint(1, 4), "delivery": rng.random() < 0.5}
        output = dict(reference)
        damage = rng.random()
        if damage < 0.2:
            output["quantity"] += 1
        elif damage < 0.35:
            output.pop("size")
        text = json.dumps(output)
        if 0.35 <= damage < 0.45:
            text = text[:-3]
        elif 0.45 <= damage < 0.5:
            text = "Here you go: " + text
        outputs.append(text)
        items.append({"reference": json.dumps(reference), "prompt": f"order {i}", "quantity": reference["quantity"]})
    return outputs, items


SPECS = {
    "string_check eq": {"type": "string_check"},
    "string_check regex": {"type": "string_check", "operation": "regex", "reference": r'"quantity": \d'},
    "json fields": {"type": "json"},
    "json + schema": {"type": "json", "score": "valid", "json_schema": {
        "type": "object", "required": ["size", "quantity"], "properties": {
            "size": {"enum": ["small", "large"]}, "quantity": {"type": "integer", "minimum": 1}}}},
    "numeric": {"type": "numeric", "reference": "{{item.quantity}}", "input": "{{sample.output_json.quantity}}"},
    "text_similarity fuzzy": {"type": "text_similarity"},
    "text_similarity bleu": {"type": "text_similarity", "evaluation_metric": "bleu"},
    "text_similarity rouge_l": {"type": "text_similarity", "evaluation_metric": "rouge_l"},
    "python": {"type": "python", "function": f"{Path(__file__).resolve()}:reward_length"},
    "multi (3 graders)": {"type": "multi", "calculate_output": "0.6 * f + 0.2 * v + 0.2 * q", "graders": {
        "f": {"type": "json"}, "v": {"type": "json", "score": "valid"},
        "q": {"type": "numeric", "reference": "{{item.quantity}}"}}},
}


def main() -> None:
    from hone.rewards import build_grader, grade_outputs
    from hone.rewards.spec import load_spec

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    outputs, items = make_batch(args.n)
    print(f"{'grader':<26} {'samples/s':>10} {'mean score':>10}")
    for name, spec in SPECS.items():
        grader = build_grader(load_spec(spec))
        started = time.perf_counter()
        grades = grade_outputs(grader, outputs, items)
        rate = len(grades) / (time.perf_counter() - started)
        print(f"{name:<26} {rate:>10,.0f} {sum(g.score for g in grades) / len(grades):>10.3f}")


if __name__ == "__main__":
    main()
