"""What a grader returns (`Grade`), what it reads (a sample and an item), and `{{...}}` templates.

A *sample* is one model output: `{"output_text": str, "output_json": parsed JSON or None}`.
An *item* is the record the output answers (any JSON object); for held-out chat files hone makes it
`{"messages", "prompt", "reference", "where"}` (see `hone.data.prompts.task_item`).
Templates name fields as `{{sample.output_text}}` or `{{item.reference}}`, with dots into nested
objects and list indices (`{{item.answers.0}}`); non-string values render as JSON.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import field_validator

from hone.config.base import Section
from hone.errors import HoneError

FENCE = re.compile(r"^```(?:json)?[ \t]*\n?(.*?)\n?[ \t]*```$", re.DOTALL | re.IGNORECASE)
NOT_JSON = object()
TEMPLATE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
FIELD = re.compile(r"^(sample|item)(\.[A-Za-z0-9_\-]+)*$")


@dataclass
class Grade:
    """One graded sample: `score` in [0, 1], a short human `reason`, and grader-specific `details`.

    A grader that cannot grade (invalid output, a raising or hanging user function, an unparseable
    judge) returns score 0 and says why in `reason`, with `error` set; it never raises.
    """

    score: float
    reason: str = ""
    error: bool = False
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {"score": self.score, "reason": self.reason}
        if self.error:
            out["error"] = True
        if self.details:
            out["details"] = self.details
        return out


def failed(reason: str, **details) -> Grade:
    return Grade(0.0, reason, error=True, details=details)


class GraderBase(Section):
    """Options every grader takes."""

    name: str | None = None
    """A label for reports and `multi` formulas (default: the grader's type)."""


class TextAgainstReference(GraderBase):
    """Options of a metric grader: the text it scores and the reference it scores it against."""

    input: str = "{{sample.output_text}}"
    """Template for the text scored."""
    reference: str = "{{item.reference}}"
    """Template for the reference text."""

    @field_validator("input", "reference")
    @classmethod
    def _templates(cls, value: str) -> str:
        return check_template(value)


class TemplateError(ValueError):
    """A template names a field the sample or item does not have."""


def as_sample(output: Any) -> dict:
    """A model output (a string, or a dict with `output_text`) as a sample with `output_json` filled."""
    if isinstance(output, dict):
        text = output.get("output_text", "")
        sample = dict(output)
    else:
        text = "" if output is None else str(output)
        sample = {}
    sample["output_text"] = text if isinstance(text, str) else json.dumps(text)
    if "output_json" not in sample:
        sample["output_json"] = parse_json_or_none(sample["output_text"])
    return sample


def parse_json_output(text: str) -> Any:
    """The JSON value in a model's output (bare or in one ```json fence), or a sentinel if there is none."""
    body = text.strip()
    fenced = FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return NOT_JSON


def parse_json_or_none(text: str) -> Any:
    value = parse_json_output(text)
    return None if value is NOT_JSON else value


def check_template(template: str) -> str:
    """Raise ValueError (for pydantic) when a `{{...}}` names something other than sample.* / item.*."""
    for name in TEMPLATE.findall(template):
        if not FIELD.match(name):
            raise ValueError(f"template field {{{{{name}}}}} must be sample.<field> or item.<field>, "
                             "e.g. {{sample.output_text}} or {{item.reference}}")
    if template.count("{{") != len(TEMPLATE.findall(template)):
        raise ValueError("unbalanced {{ in template")
    return template


def lookup(name: str, sample: dict, item: dict) -> Any:
    """The value a template field names, or TemplateError saying which part is missing."""
    root, *parts = name.split(".")
    value: Any = sample if root == "sample" else item
    for depth, part in enumerate(parts):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            where = ".".join([root, *parts[:depth]])
            raise TemplateError(f"{where} has no field {part!r} (template {{{{{name}}}}})")
    return value


def render(template: str, sample: dict, item: dict) -> str:
    """Fill every `{{field}}` of `template`; strings go in as they are, other values as JSON."""
    def fill(match: re.Match) -> str:
        value = lookup(match.group(1), sample, item)
        return value if isinstance(value, str) else json.dumps(value)

    return TEMPLATE.sub(fill, template)


def bounded(score: float, reason: str, **details) -> Grade:
    """A Grade with `score` clipped into [0, 1] (the raw value kept in details when it was clipped)."""
    if not math.isfinite(score):
        return failed(f"score is {score}", **details)
    if 0.0 <= score <= 1.0:
        return Grade(float(score), reason, details=details)
    return Grade(min(1.0, max(0.0, float(score))), f"{reason} (clipped from {score:g})",
                 details={**details, "raw_score": score})


def mean_of_keys(per_example: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each key over the examples."""
    totals: dict[str, float] = {}
    for result in per_example:
        for key, value in result.items():
            totals[key] = totals.get(key, 0.0) + value
    return {key: total / len(per_example) for key, total in totals.items()}


class Grader:
    """A built grader: `grade(samples, items)` gives one Grade per sample, never raising for a bad output.

    What its grades report is declared here, with defaults for graders whose only number is the
    score: `per_item(grade)` is what an evaluation keeps per item, `primary` the key of it that ranks
    wins and losses, and `summarize(grades)` what a set of grades reports (eval tables, `eval_*`
    run metrics). Graders that are metrics (`exact_match`, `json`, `labels`) report their own parts.
    """

    name: str
    primary: str = "grader_score"

    def grade(self, samples: list[dict], items: list[dict]) -> list[Grade]:
        raise NotImplementedError

    def per_item(self, grade: Grade) -> dict:
        return {"grader_score": grade.score, "reason": grade.reason}

    def summarize(self, grades: list[Grade]) -> dict[str, float]:
        """The mean score and the share of samples that could not be graded."""
        n = max(len(grades), 1)
        return {"grader_score": sum(g.score for g in grades) / n, "grader_errors": sum(g.error for g in grades) / n}


class PerItem(Grader):
    """A batch grader made from a function grading one (sample, item); its exceptions become Grades."""

    def __init__(self, name: str, grade_one: Callable[[dict, dict], Grade]) -> None:
        self.name = name
        self.grade_one = grade_one

    def grade(self, samples: list[dict], items: list[dict]) -> list[Grade]:
        return [safe_call(self.grade_one, sample, item) for sample, item in zip(samples, items)]


class MetricGrader(PerItem):
    """A grader whose per-item result is a metric's named parts: `parts(text, reference) -> {key: value}`
    of the rendered output and reference; the Grade's score is the `primary` part. Examples combine
    by `aggregate` (default: the mean of each part)."""

    def __init__(self, name: str, parts: Callable[[str, str], dict[str, float]], primary: str, *,
                 aggregate: Callable[[list[dict[str, float]]], dict[str, float]] = mean_of_keys,
                 input: str = "{{sample.output_text}}", reference: str = "{{item.reference}}") -> None:
        def grade_one(sample: dict, item: dict) -> Grade:
            values = parts(render(input, sample, item), render(reference, sample, item))
            return Grade(values[primary], f"{primary} {values[primary]:.3g}", details=values)

        super().__init__(name, grade_one)
        self.primary, self.aggregate = primary, aggregate

    def per_item(self, grade: Grade) -> dict:
        return grade.details

    def summarize(self, grades: list[Grade]) -> dict[str, float]:
        return self.aggregate([g.details for g in grades])


def safe_call(function: Callable[[dict, dict], Grade], sample: dict, item: dict) -> Grade:
    try:
        return function(sample, item)
    except TemplateError as exc:
        return failed(str(exc))
    except Exception as exc:  # noqa: BLE001 - a grader never crashes a batch
        return failed(f"{type(exc).__name__}: {exc}")


def grade_safely(grader: Grader, samples: list[dict], items: list[dict]) -> list[Grade]:
    """`grader.grade`, with an unexpected exception turned into a 0 for every sample (never a crash)."""
    try:
        grades = grader.grade(samples, items)
    except HoneError:
        raise  # a configuration problem (e.g. a judge model that does not exist) is the user's to fix
    except Exception as exc:  # noqa: BLE001
        return [failed(f"{grader.name} failed: {type(exc).__name__}: {exc}") for _ in samples]
    return grades
