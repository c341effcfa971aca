"""`tool_call`: call accuracy, the right functions called with the right arguments.

The output and the reference are both read for `<tool_call>{"name", "arguments"}</tool_call>` lines (hone's
rendering of calls, `hone.data.tools`); for a held-out function-calling file the reference is the final
assistant turn's calls rendered that way. Calls are matched in any order, a function's arguments
compared as parsed JSON objects. Score (`calls`, the default): the calls right in name and arguments
over the larger of the two call counts, so a missing and an extra call both cost; `exact`: 1 only when
every call matches and none is extra. A reference without calls (a plain reply) wants no call: 1 when
the output makes none. Details: `function_accuracy` (names alone), `arguments_accuracy`, `exact_match`.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Literal

from pydantic import Field, field_validator

from hone.data.tools import parse_tool_calls
from hone.rewards.grade import Grade, GraderBase, PerItem, check_template, render


class Config(GraderBase):
    type: Literal["tool_call"] = "tool_call"
    input: str = Field("{{sample.output_text}}", description="Template for the model output read for calls.")
    reference: str = Field("{{item.reference}}", description="Template for the reference holding the expected "
                           "<tool_call> lines (a held-out file's final assistant calls by default).")
    score: Literal["calls", "exact"] = Field("calls", description="calls: the share of calls right in function "
                                             "and arguments (partial credit); exact: 1 only when all are right.")

    _templates = field_validator("input", "reference")(check_template)


def calls_of(text: str) -> list[tuple[str, dict]]:
    """(function name, arguments) of each call in `text`."""
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in parse_tool_calls(text)[1]]


def matched(predicted: list, expected: list) -> int:
    """How many expected items have an equal predicted one (each predicted item used once)."""
    left = list(predicted)
    count = 0
    for want in expected:
        if want in left:
            left.remove(want)
            count += 1
    return count


def build(config: Config) -> PerItem:
    def grade_one(sample: dict, item: dict) -> Grade:
        predicted = calls_of(render(config.input, sample, item))
        expected = calls_of(render(config.reference, sample, item))
        if not expected:
            right = float(not predicted)
            return Grade(right, "no call expected" + (", none made" if right else f", {len(predicted)} made"),
                         details={"function_accuracy": right, "arguments_accuracy": right, "exact_match": right})
        most = max(len(predicted), len(expected))
        names = sum((Counter(n for n, _ in predicted) & Counter(n for n, _ in expected)).values()) / most
        calls = matched(predicted, expected) / most
        exact = float(calls == 1.0)
        details = {"function_accuracy": names, "arguments_accuracy": calls, "exact_match": exact,
                   "calls_made": len(predicted), "calls_expected": len(expected)}
        reason = (f"{matched(predicted, expected)} of {len(expected)} expected calls right"
                  + (f", {len(predicted)} made" if len(predicted) != len(expected) else ""))
        return Grade(exact if config.score == "exact" else calls, reason, details=details)

    return PerItem(config.name or config.type, grade_one)
