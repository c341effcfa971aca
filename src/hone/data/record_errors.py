"""The error a record that does not fit its format raises, and JSON type names for its messages."""

from __future__ import annotations

import json
from collections.abc import Iterator


class RecordError(ValueError):
    """A record does not fit its format; `field` is a path into the record such as `messages[2].role`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages ('number', 'array', ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def a_json_type(value: object) -> str:
    """The JSON type name with its article ('a number', 'an array', 'null'), for error messages."""
    name = json_type(value)
    if name == "null":
        return name
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def typed_objects(values: list, field: str, kind: str, noun: str, shape: str) -> Iterator[tuple[str, dict]]:
    """(field path, object) for each of `values`, each checked to be an object whose `type` is `kind`
    (content parts, tools); `shape` is what the error shows as expected."""
    for i, value in enumerate(values):
        where = f"{field}[{i}]"
        if not isinstance(value, dict):
            raise RecordError(where, f"is {a_json_type(value)}; expected {shape}")
        if value.get("type") != kind:
            raise RecordError(f"{where}.type", f"is {json.dumps(value.get('type'))}; only \"{kind}\" {noun} are supported")
        yield where, value
