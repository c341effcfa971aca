"""Read and validate a grader spec (a dict, inline JSON, or a JSON/YAML file), naming bad paths."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from hone.errors import ConfigError
from hone.rewards import GRADERS, GRADER_CONFIGS, SPEC


def load_spec(source: Any, *, where: str | None = None):
    """A validated grader config from a config object, a dict, inline JSON text or a .json/.yaml file."""
    if isinstance(source, tuple(GRADER_CONFIGS)):
        return source
    if isinstance(source, BaseModel):
        source = source.model_dump(mode="json")
    if isinstance(source, (str, Path)):
        where = where or (str(source) if not str(source).lstrip().startswith("{") else "grader")
        source = read_spec_text(source)
    return validate_spec(source, where=where or "grader")


def read_spec_text(source: str | Path) -> Any:
    """Inline JSON (text starting with `{`) or the contents of a JSON or YAML file."""
    text = str(source)
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"inline grader spec is not JSON: {exc.msg} (column {exc.colno})",
                              where="grader") from None
    path = Path(text)
    try:
        body = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read grader spec: {exc.strerror}", where=str(path),
                          hint="pass a .json/.yaml file or inline JSON such as '{\"type\": \"string_check\"}'") from None
    import yaml

    try:
        return yaml.safe_load(body)  # YAML is a superset of JSON, so this reads .json files too
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"not valid JSON/YAML: {getattr(exc, 'problem', exc)}",
                          where=f"{path}:{mark.line + 1}" if mark else str(path)) from None


def validate_spec(data: Any, *, where: str = "grader"):
    """Validate a raw spec; ConfigError listing each problem as `path: message`."""
    if not isinstance(data, dict):
        raise ConfigError("a grader spec must be an object with a `type`", where=where,
                          hint=f"types: {', '.join(GRADERS)}")
    try:
        return SPEC.validate_python(data)
    except ValidationError as exc:
        problems = [f"{spec_path(err['loc']) or 'spec'}: {spec_message(err)}" for err in exc.errors()]
        raise ConfigError(f"{len(problems)} problem{'s' * (len(problems) > 1)} in the grader spec",
                          where=where, issues=problems) from None


def spec_path(loc: tuple) -> str:
    """A pydantic error location as a spec path, leaving out the union's `type` tags."""
    parts: list[str] = []
    for i, part in enumerate(loc):
        if i == 0 or (i >= 2 and loc[i - 2] == "graders"):
            continue  # the discriminator tag pydantic puts after each union
        parts.append(f"[{part}]" if isinstance(part, int) else str(part))
    return ".".join(parts).replace(".[", "[")


def spec_message(err: dict) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown setting"
    if err["type"] == "union_tag_invalid":
        return f"unknown grader type {err['ctx']['tag']!r}; expected one of {', '.join(GRADERS)}"
    if err["type"] == "union_tag_not_found":
        return f"missing `type`; one of {', '.join(GRADERS)}"
    return err["msg"].removeprefix("Value error, ")


def dump_spec(config) -> dict:
    """The normalised spec: every option with its value, as plain JSON-able data."""
    return config.model_dump(mode="json")
