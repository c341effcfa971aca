"""`string_check`: compare the output with a reference string (OpenAI's grader of the same name).

Operations: `eq` / `ne` (equal or not after `strip`), `contains` (the output contains the reference),
`regex` (the reference is a pattern `re.search`ed in the output), and OpenAI's `like` (= contains)
and `ilike` (= contains, ignoring case). `case_sensitive: false` makes every operation ignore case.
Score 1 when the check holds, else 0.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import ValidationInfo, field_validator

from hone.rewards.grade import Grade, GraderBase, PerItem, check_template, failed, render


class Config(GraderBase):
    type: Literal["string_check"] = "string_check"
    operation: Literal["eq", "ne", "contains", "regex", "like", "ilike"] = "eq"
    input: str = "{{sample.output_text}}"
    """Template for the text checked."""
    reference: str = "{{item.reference}}"
    """Template for the reference string (a regex pattern for `regex`)."""
    case_sensitive: bool = True
    strip: bool = True
    """Strip surrounding whitespace from both sides before comparing."""

    _templates = field_validator("input", "reference")(check_template)

    @field_validator("reference")
    @classmethod
    def _pattern_compiles(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("operation") == "regex" and "{{" not in value:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


def holds(operation: str, text: str, reference: str, *, case_sensitive: bool = True) -> bool:
    """Whether `operation` holds between `text` and `reference` (re.error for a bad regex)."""
    if operation == "regex":
        return re.search(reference, text, 0 if case_sensitive else re.IGNORECASE) is not None
    if operation == "ilike" or not case_sensitive:
        text, reference = text.casefold(), reference.casefold()
    if operation == "eq":
        return text == reference
    if operation == "ne":
        return text != reference
    return reference in text  # contains, like, ilike


def build(config: Config) -> PerItem:
    def grade_one(sample: dict, item: dict) -> Grade:
        text, reference = render(config.input, sample, item), render(config.reference, sample, item)
        if config.strip:
            text, reference = text.strip(), reference.strip()
        try:
            ok = holds(config.operation, text, reference, case_sensitive=config.case_sensitive)
        except re.error as exc:
            return failed(f"reference {reference!r} is not a valid regular expression: {exc}")
        verdict = "holds" if ok else "does not hold"
        return Grade(float(ok), f"{config.operation} {verdict} for {_short(text)} vs {_short(reference)}")

    return PerItem(config.name or config.type, grade_one)


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")
