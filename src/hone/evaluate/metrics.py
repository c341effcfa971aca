"""Task metrics: score one prediction string against one reference string, then average.

Every metric is a pure function `(prediction, reference) -> dict[str, float]`; `score` averages
each key over a set of examples. Pure python, so evaluation code can import it without torch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable

from hone.errors import HoneError

_FENCE = re.compile(r"^```(?:json)?[ \t]*\n?(.*?)\n?[ \t]*```$", re.DOTALL | re.IGNORECASE)
_NOT_JSON = object()


def exact_match(prediction: str, reference: str) -> dict[str, float]:
    """1.0 when the two strings are equal after stripping surrounding whitespace."""
    return {"exact_match": float(prediction.strip() == reference.strip())}


def json_fields(prediction: str, reference: str) -> dict[str, float]:
    """How many of the reference JSON's fields the predicted JSON gets right.

    The prediction may be wrapped in whitespace and one ```json fence; any other text around the
    JSON makes it invalid. Fields are the reference's leaves, nested objects flattened to paths
    (`{"a": {"b": 1}}` has the one field `a.b`); a list is one field, compared as a multiset when
    it holds only scalars. Missing fields are wrong; extra predicted fields neither add nor subtract.
    `exact_match` is equality of the parsed values under the same rules (so extra fields break it).
    Numbers compare by value (1 == 1.0) but booleans are not numbers (true != 1).
    """
    predicted = parse_json_output(prediction)
    if predicted is _NOT_JSON:
        return {"json_valid": 0.0, "field_accuracy": 0.0, "exact_match": 0.0}
    expected = json.loads(reference)
    return {
        "json_valid": 1.0,
        "field_accuracy": field_accuracy(predicted, expected),
        "exact_match": float(json_values_equal(predicted, expected)),
    }


def parse_json_output(text: str) -> Any:
    """The JSON value in a model's output (bare or in one ```json fence), or a sentinel if there is none."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return _NOT_JSON


def field_accuracy(predicted: Any, expected: Any) -> float:
    """Fraction of `expected`'s leaf fields whose value at the same path in `predicted` is equal."""
    if expected == {}:  # no fields to get wrong, but the prediction must still be an object
        return float(isinstance(predicted, dict))
    expected_fields = _leaf_fields(expected)
    predicted_fields = _leaf_fields(predicted)
    right = sum(
        1
        for path, value in expected_fields.items()
        if path in predicted_fields and json_values_equal(predicted_fields[path], value)
    )
    return right / len(expected_fields)


def json_values_equal(a: Any, b: Any) -> bool:
    """JSON equality where scalar lists are multisets, 1 == 1.0, and booleans differ from numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_values_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return False
        if all(_is_scalar(x) for x in a + b):
            return _same_multiset(a, b)
        return all(json_values_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, (dict, list))


def _same_multiset(a: list, b: list) -> bool:
    """Whether every item of `a` pairs off with an equal, unused item of `b` (lengths already equal)."""
    unused = list(b)
    for item in a:
        match = next((i for i, other in enumerate(unused) if json_values_equal(item, other)), None)
        if match is None:
            return False
        unused.pop(match)
    return True


def _leaf_fields(value: Any, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Flatten nested objects into {path: leaf}; lists, scalars and empty objects are leaves.

    Paths are tuples (the dotted path `a.b` is `("a", "b")`) so a key containing a dot cannot collide.
    """
    if isinstance(value, dict) and value:
        fields: dict[tuple[str, ...], Any] = {}
        for key, child in value.items():
            fields.update(_leaf_fields(child, path + (key,)))
        return fields
    return {path: value}


def labels(prediction: str, reference: str) -> dict[str, float]:
    """Label-set overlap: true/false positives and negatives, this example's F1 and set equality.

    Labels are a JSON list of strings, or text split on commas, semicolons and new lines; they
    compare case-insensitively with surrounding whitespace and a final period ignored. `score`
    turns the summed counts into micro-averaged precision, recall and F1 (see `micro_f1`).
    """
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


def mean_of_keys(per_example: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each key over the examples."""
    totals: dict[str, float] = {}
    for result in per_example:
        for key, value in result.items():
            totals[key] = totals.get(key, 0.0) + value
    return {key: total / len(per_example) for key, total in totals.items()}


def micro_f1(per_example: list[dict[str, float]]) -> dict[str, float]:
    """Micro-averaged precision/recall/F1 over summed label counts, plus the rate of exact label sets."""
    tp, fp, fn = (sum(r[k] for r in per_example) for k in ("tp", "fp", "fn"))
    return {**f1_from_counts(tp, fp, fn), "exact_match": mean_of_keys(per_example)["exact_match"]}


@dataclass(frozen=True)
class Metric:
    """A named metric: `per_example(prediction, reference) -> {key: value}`, how examples combine
    (`aggregate`, default the mean of each key) and `primary`, the per-example key that ranks wins
    and losses in reports. Calling a Metric scores one example."""

    name: str
    per_example: Callable[[str, str], dict[str, float]]
    primary: str
    aggregate: Callable[[list[dict[str, float]]], dict[str, float]] = mean_of_keys

    def __call__(self, prediction: str, reference: str) -> dict[str, float]:
        return self.per_example(prediction, reference)


METRICS: dict[str, Metric] = {
    "exact_match": Metric("exact_match", exact_match, "exact_match"),
    "json": Metric("json", json_fields, "field_accuracy"),
    "labels": Metric("labels", labels, "f1", micro_f1),
}


def register_metric(name: str, per_example: Callable[[str, str], dict[str, float]], *, primary: str,
                    aggregate: Callable[[list[dict[str, float]]], dict[str, float]] | None = None) -> Metric:
    """Make `name` usable as `eval.metric` / `hone eval --metric`: the plug for graders.

    A grader is any pure `(prediction, reference) -> {key: value in [0, 1]}`; `primary` names the
    key that ranks per-example wins and losses.
    """
    METRICS[name] = Metric(name, per_example, primary, aggregate or mean_of_keys)
    return METRICS[name]


def metric_for(metric_name: str) -> Metric:
    if metric_name not in METRICS:
        raise HoneError(
            f"unknown metric {metric_name!r}",
            where="metric",
            hint=f"known metrics: {', '.join(sorted(METRICS))}",
        )
    return METRICS[metric_name]


def score_examples(metric_name: str, predictions: list[str], references: list[str]) -> list[dict[str, float]]:
    """The metric's per-example results, in order."""
    metric = metric_for(metric_name)
    if len(predictions) != len(references):
        raise HoneError(
            f"{len(predictions)} predictions for {len(references)} references",
            where=f"metric {metric_name}",
            hint="pass one prediction per reference, in the same order",
        )
    return [metric(p, r) for p, r in zip(predictions, references)]


def aggregate(metric_name: str, per_example: list[dict[str, float]]) -> dict[str, float]:
    """Combine per-example results as the metric says, plus `n`, the number of examples."""
    if not per_example:
        return {"n": 0}
    return {**metric_for(metric_name).aggregate(per_example), "n": len(per_example)}


def score(metric_name: str, predictions: list[str], references: list[str]) -> dict[str, float]:
    """The metric over a set of examples (the mean of each key unless the metric says otherwise), plus `n`."""
    return aggregate(metric_name, score_examples(metric_name, predictions, references))
