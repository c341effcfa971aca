"""A small JSON Schema subset, enough to check a model's structured output without a dependency.

Supported: `type` (one or a list), `enum`, `const`, `properties`, `required`, `additionalProperties`
(true/false or a schema), `items`, `minItems`, `maxItems`, `minimum`, `maximum`, `exclusiveMinimum`,
`exclusiveMaximum`, `minLength`, `maxLength`, `pattern`, `anyOf`, `allOf`; annotations (`title`,
`description`, `$schema`, ...) are ignored. Any other keyword is refused when the spec is
validated, so a schema never passes because hone skipped part of it.
"""

from __future__ import annotations

import re
from typing import Any

TYPES = {
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}
ANNOTATIONS = {"title", "description", "$schema", "$id", "default", "examples", "$comment"}
KEYWORDS = {"type", "enum", "const", "properties", "required", "additionalProperties", "items", "minItems",
            "maxItems", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
            "pattern", "anyOf", "allOf"} | ANNOTATIONS


def check_schema(schema: Any, path: str = "") -> None:
    """Raise ValueError naming the path of the first keyword this subset does not support."""
    if not isinstance(schema, dict):
        raise ValueError(f"{path or 'the schema'}: a schema must be an object")
    for key, value in schema.items():
        if key not in KEYWORDS:
            raise ValueError(f"{path}{key}: unsupported schema keyword; hone checks {', '.join(sorted(KEYWORDS - ANNOTATIONS))}")
        if key == "type":
            for name in value if isinstance(value, list) else [value]:
                if name not in TYPES:
                    raise ValueError(f"{path}type: unknown type {name!r}")
        elif key == "properties":
            for name, child in value.items():
                check_schema(child, f"{path}properties.{name}.")
        elif key in ("items",) or (key == "additionalProperties" and isinstance(value, dict)):
            check_schema(value, f"{path}{key}.")
        elif key in ("anyOf", "allOf"):
            for i, child in enumerate(value):
                check_schema(child, f"{path}{key}[{i}].")
        elif key == "pattern":
            re.compile(value)


def schema_errors(value: Any, schema: dict, path: str = "$") -> list[str]:
    """Every way `value` breaks `schema`, as `$.field: what` lines (empty when it conforms)."""
    errors: list[str] = []
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(TYPES[k](value) for k in kinds):
            return [f"{path}: expected {' or '.join(kinds)}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: expected {schema['const']!r}")
    if isinstance(value, dict):
        errors += _object_errors(value, schema, path)
    if isinstance(value, list):
        errors += _array_errors(value, schema, path)
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", float("inf")):
            errors.append(f"{path}: length {len(value)} out of bounds")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: does not match {schema['pattern']!r}")
    if TYPES["number"](value):
        errors += _number_errors(value, schema, path)
    if "anyOf" in schema and all(schema_errors(value, s, path) for s in schema["anyOf"]):
        errors.append(f"{path}: matches none of anyOf")
    for sub in schema.get("allOf", []):
        errors += schema_errors(value, sub, path)
    return errors


def _object_errors(value: dict, schema: dict, path: str) -> list[str]:
    errors = [f"{path}: missing required field {k!r}" for k in schema.get("required", []) if k not in value]
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, child in value.items():
        if key in properties:
            errors += schema_errors(child, properties[key], f"{path}.{key}")
        elif extra is False:
            errors.append(f"{path}: unexpected field {key!r}")
        elif isinstance(extra, dict):
            errors += schema_errors(child, extra, f"{path}.{key}")
    return errors


def _array_errors(value: list, schema: dict, path: str) -> list[str]:
    errors = []
    if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", float("inf")):
        errors.append(f"{path}: {len(value)} items out of bounds")
    if "items" in schema:
        for i, child in enumerate(value):
            errors += schema_errors(child, schema["items"], f"{path}[{i}]")
    return errors


def _number_errors(value: float, schema: dict, path: str) -> list[str]:
    checks = (("minimum", lambda b: value >= b), ("maximum", lambda b: value <= b),
              ("exclusiveMinimum", lambda b: value > b), ("exclusiveMaximum", lambda b: value < b))
    return [f"{path}: {value} breaks {key} {schema[key]}" for key, ok in checks if key in schema and not ok(schema[key])]
