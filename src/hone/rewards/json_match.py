"""`json`: the output is valid JSON, optionally fits a schema, and matches a reference field by field.

Parsing and matching are `hone.evaluate.metrics`'s (`json_fields`): whitespace and one ```json fence
may surround the JSON; fields are the reference's leaves (nested objects flattened to paths), scalar
lists compare as multisets, 1 == 1.0, true != 1. `score: fields` (default) gives partial credit, the
fraction of reference fields right; `exact` gives 1 only when the parsed values are equal; `valid`
ignores the reference. A schema violation or invalid JSON scores 0 whatever `score` says.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import field_validator

from hone.evaluate.metrics import _NOT_JSON, field_accuracy, json_values_equal, parse_json_output
from hone.rewards.grade import Grade, GraderBase, PerItem, check_template, failed, render
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


def build(config: Config) -> PerItem:
    def grade_one(sample: dict, item: dict) -> Grade:
        text = render(config.input, sample, item)
        predicted = parse_json_output(text)
        if predicted is _NOT_JSON:
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
        if expected is _NOT_JSON:
            return failed("the reference is not valid JSON", json_valid=1.0)
        fields = field_accuracy(predicted, expected)
        exact = float(json_values_equal(predicted, expected))
        details = {"json_valid": 1.0, "field_accuracy": fields, "exact_match": exact}
        if config.score == "exact":
            return Grade(exact, "equal to the reference" if exact else "differs from the reference", details=details)
        return Grade(fields, f"{fields:.0%} of reference fields right", details=details)

    return PerItem(config.name or config.type, grade_one)


def _reference(reference: Any, sample: dict, item: dict) -> Any:
    if not isinstance(reference, str):
        return reference
    return parse_json_output(render(reference, sample, item))
