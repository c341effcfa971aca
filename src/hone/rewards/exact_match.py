"""`exact_match`: the output equals the reference after stripping surrounding whitespace (the default metric).

Score 1 or 0; it reports its one part, `exact_match`. `metric: exact_match` is `grader: {type: exact_match}`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from hone.rewards.grade import GraderBase, MetricGrader, check_template


class Config(GraderBase):
    type: Literal["exact_match"] = "exact_match"
    input: str = "{{sample.output_text}}"
    """Template for the text compared."""
    reference: str = "{{item.reference}}"
    """Template for the reference text."""

    _templates = field_validator("input", "reference")(check_template)


def exact_match(prediction: str, reference: str) -> dict[str, float]:
    """1.0 when the two strings are equal after stripping surrounding whitespace."""
    return {"exact_match": float(prediction.strip() == reference.strip())}


def build(config: Config) -> MetricGrader:
    return MetricGrader(config.name or config.type, exact_match, "exact_match", input=config.input,
                        reference=config.reference)
