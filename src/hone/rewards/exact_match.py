"""`exact_match`: the output equals the reference after stripping surrounding whitespace (the default metric).

Score 1 or 0; it reports its one part, `exact_match`. `metric: exact_match` is `grader: {type: exact_match}`.
"""

from __future__ import annotations

from typing import Literal

from hone.rewards.grade import MetricGrader, TextAgainstReference


class Config(TextAgainstReference):
    type: Literal["exact_match"] = "exact_match"


def exact_match(prediction: str, reference: str) -> dict[str, float]:
    """1.0 when the two strings are equal after stripping surrounding whitespace."""
    return {"exact_match": float(prediction.strip() == reference.strip())}


def build(config: Config) -> MetricGrader:
    return MetricGrader(config.name or config.type, exact_match, "exact_match", input=config.input,
                        reference=config.reference)
