"""`numeric`: the number in the output equals the reference within a tolerance.

The number is pulled from free text (`The answer is 1,234.5.` gives 1234.5): `extract: last`
(default, as for worked solutions that end in the answer), `first`, or `only` (more than one
number in the output scores 0). Thousands separators, signs, decimals and exponents are read.
It passes when |output - reference| <= max(abs_tolerance, rel_tolerance * |reference|). Score 1 or 0.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from hone.rewards.grade import Grade, GraderBase, PerItem, check_template, failed, render

NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")


class Config(GraderBase):
    type: Literal["numeric"] = "numeric"
    input: str = "{{sample.output_text}}"
    reference: str = "{{item.reference}}"
    """Template for the reference; it must hold exactly one number."""
    abs_tolerance: float = Field(0.0, ge=0)
    rel_tolerance: float = Field(0.0, ge=0)
    extract: Literal["last", "first", "only"] = "last"

    _templates = field_validator("input", "reference")(check_template)


def numbers(text: str) -> list[float]:
    """Every number written in `text`, in order."""
    return [float(m.group().replace(",", "")) for m in NUMBER.finditer(text)]


def build(config: Config) -> PerItem:
    def grade_one(sample: dict, item: dict) -> Grade:
        found = numbers(render(config.input, sample, item))
        expected = numbers(render(config.reference, sample, item))
        if len(expected) != 1:
            return failed(f"the reference holds {len(expected)} numbers; expected exactly one")
        if not found:
            return failed("no number in the output")
        if config.extract == "only" and len(found) > 1:
            return failed(f"the output holds {len(found)} numbers; expected only one")
        value = found[-1] if config.extract == "last" else found[0]
        tolerance = max(config.abs_tolerance, config.rel_tolerance * abs(expected[0]))
        ok = abs(value - expected[0]) <= tolerance
        return Grade(float(ok), f"{value:g} {'within' if ok else 'not within'} {tolerance:g} of {expected[0]:g}",
                     details={"value": value, "reference": expected[0]})

    return PerItem(config.name or config.type, grade_one)
