"""`json`: the output is valid JSON, optionally fits a schema, and matches a reference field by field.

Whitespace and one ```json fence may surround the JSON; fields are the reference's leaves (nested
objects flattened to paths), scalar lists compare as multisets, 1 == 1.0, true != 1 (`json_fields`).
`score: fields` (default) gives partial credit, the fraction of reference fields right; `exact`
gives 1 only when the parsed values are equal; `valid` ignores the reference. A schema violation or
invalid JSON scores 0 whatever `score` says. It is also the `json` metric (`metric: json` is
`grader: {type: json}`): it reports its parts json_valid, field_accuracy and exact_match, and the
mean score as well when a schema can fail an output its parts call right.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import field_validator

from hone.rewards.grade import (NOT_JSON, Grade, GraderBase, PerItem, check_template, failed, mean_of_keys,
                               parse_json_output, render)
from hone.rewards.json_schema import check_schema, schema_errors


class Config(GraderBase):
    type: Literal["json"] = "json"
    input: str = "{{sample.output_text}}"
    reference: str | dict | list | None = "{{item.reference}}"
    """Template for the reference JSON text, a literal JSON object/array, or null for no reference."""
    json_schema: dict | None = None
    """A JSON Schema (hone's subset, see `hone.rewards.json_schema`) the output must satisfy."""
    score: Literal["fields", "exact", "valid"] = "fields"

    @field_validator("input")
    @classmethod
    def _input_template(cls, value: str) -> str:
        return check_template(value)

    @field_validator("reference")
    @classmethod
    def _reference_template(cls, value):
        return check_template(value) if isinstance(value, str) else value

    @field_validator("json_schema")
    @classmethod
    def _supported_schema(cls, value):
        if value is not None:
            try:
                check_schema(value)
            except (TypeError, AttributeError, KeyError) as exc:
                raise ValueError(f"malformed schema: {exc}") from None
            except Exception as exc:  # re.error from a bad pattern
                raise ValueError(str(exc)) from None
        return value


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
    if predicted is NOT_JSON:
        return {"json_valid": 0.0, "field_accuracy": 0.0, "exact_match": 0.0}
    expected = json.loads(reference)
    return {
        "json_valid": 1.0,
        "field_accuracy": field_accuracy(predicted, expected),
        "exact_match": float(json_values_equal(predicted, expected)),
    }


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


def json_error(text: str) -> str:
    """Why `text` is not JSON, in a few words."""
    if not text.strip():
        return "empty output"
    try:
        json.loads(text.strip())
    except json.JSONDecodeError as exc:
        return f"invalid JSON: {exc.msg} (column {exc.colno})"
    except RecursionError:
        return "invalid JSON: nested too deeply"
    return "invalid JSON: text around the JSON value"


PARTS = ("json_valid", "field_accuracy", "exact_match")
SCORED_PART = {"fields": "field_accuracy", "exact": "exact_match", "valid": "json_valid"}


class JsonGrader(PerItem):
    """Reports the parts it computes (each missing part of a failed grade counts 0), plus the mean score
    when a schema is set (the parts alone would not show it)."""

    def __init__(self, config: Config, grade_one) -> None:
        super().__init__(config.name or config.type, grade_one)
        checks_fields = config.score != "valid" and config.reference is not None
        self.parts = PARTS if checks_fields else PARTS[:1]
        self.by_score = config.json_schema is not None
        self.primary = "grader_score" if self.by_score else SCORED_PART[config.score if checks_fields else "valid"]

    def per_item(self, grade: Grade) -> dict:
        parts = {part: grade.details.get(part, 0.0) for part in self.parts}
        return {"grader_score": grade.score, **parts} if self.by_score else parts

    def summarize(self, grades: list[Grade]) -> dict[str, float]:
        parts = mean_of_keys([self.per_item(g) for g in grades]) if grades else {}
        return {**super().summarize(grades), **parts} if self.by_score else parts


def build(config: Config) -> JsonGrader:
    def grade_one(sample: dict, item: dict) -> Grade:
        text = render(config.input, sample, item)
        predicted = parse_json_output(text)
        if predicted is NOT_JSON:
            return failed(json_error(text), json_valid=0.0)
        if config.json_schema is not None:
            problems = schema_errors(predicted, config.json_schema)
            if problems:
                return failed(f"schema: {problems[0]}" + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""),
                              json_valid=1.0, schema_errors=problems)
        if config.score == "valid" or config.reference is None:
            return Grade(1.0, "valid JSON" + (" matching the schema" if config.json_schema else ""),
                         details={"json_valid": 1.0})
        expected = _reference(config.reference, sample, item)
        if expected is NOT_JSON:
            return failed("the reference is not valid JSON", json_valid=1.0)
        fields = field_accuracy(predicted, expected)
        exact = float(json_values_equal(predicted, expected))
        details = {"json_valid": 1.0, "field_accuracy": fields, "exact_match": exact}
        if config.score == "exact":
            return Grade(exact, "equal to the reference" if exact else "differs from the reference", details=details)
        return Grade(fields, f"{fields:.0%} of reference fields right", details=details)

    return JsonGrader(config, grade_one)


def _reference(reference: Any, sample: dict, item: dict) -> Any:
    if not isinstance(reference, str):
        return reference
    return parse_json_output(render(reference, sample, item))
