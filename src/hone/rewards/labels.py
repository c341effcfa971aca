"""`labels`: the output's set of labels against the reference's, micro-averaged over the items.

Labels are a JSON list of strings, or text split on commas, semicolons and new lines; they compare
case-insensitively with surrounding whitespace and a final period ignored. Each item's score is its
F1; a set of items reports micro-averaged precision, recall and F1 over the summed true/false
positives and negatives, and the rate of exact label sets. `metric: labels` is `grader: {type: labels}`.
"""

from __future__ import annotations

import re
from typing import Literal

from hone.rewards.grade import MetricGrader, TextAgainstReference, mean_of_keys, parse_json_output


class Config(TextAgainstReference):
    type: Literal["labels"] = "labels"


def labels(prediction: str, reference: str) -> dict[str, float]:
    """One item's label-set overlap: true/false positives and negatives, its F1 and set equality."""
    predicted, expected = parse_labels(prediction), parse_labels(reference)
    tp, fp, fn = len(predicted & expected), len(predicted - expected), len(expected - predicted)
    return {"tp": float(tp), "fp": float(fp), "fn": float(fn), "f1": f1_from_counts(tp, fp, fn)["f1"],
            "exact_match": float(predicted == expected)}


def parse_labels(text: str) -> set[str]:
    """The set of normalised labels in `text` (a JSON list of strings, or comma/semicolon/line separated)."""
    value = parse_json_output(text)
    parts = value if isinstance(value, list) and all(isinstance(v, str) for v in value) else re.split(r"[,;\n]", text)
    return {p.strip().rstrip(".").strip().lower() for p in parts if p.strip().rstrip(".").strip()}


def f1_from_counts(tp: float, fp: float, fn: float) -> dict[str, float]:
    """Precision, recall and F1 from counts; with nothing predicted and nothing expected all three are 1."""
    precision = tp / (tp + fp) if tp + fp else float(fn == 0)
    recall = tp / (tp + fn) if tp + fn else float(fp == 0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def micro_f1(per_example: list[dict[str, float]]) -> dict[str, float]:
    """Micro-averaged precision/recall/F1 over summed label counts, plus the rate of exact label sets."""
    tp, fp, fn = (sum(r.get(k, 0.0) for r in per_example) for k in ("tp", "fp", "fn"))  # a failed grade has none
    return {**f1_from_counts(tp, fp, fn), "exact_match": mean_of_keys(per_example).get("exact_match", 0.0)}


def build(config: Config) -> MetricGrader:
    return MetricGrader(config.name or config.type, labels, "f1", aggregate=micro_f1, input=config.input,
                        reference=config.reference)
