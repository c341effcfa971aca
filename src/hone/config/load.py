"""Build a `RunConfig` from a preset, a YAML file and `key=value` overrides, naming bad paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hone.config.schema import RunConfig
from hone.errors import ConfigError
from hone.rewards.spec import spec_path

PRESETS_DIR = Path(__file__).parent / "presets"


def presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def load_config(
    path: str | Path | dict | RunConfig | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    *,
    preset: str | None = None,
) -> RunConfig:
    """Merge preset < file (or a dict / RunConfig) < overrides (later wins) and validate the result."""
    if isinstance(path, RunConfig):
        if not overrides and not preset:
            return path
        path = path.model_dump(mode="json")
    data: dict[str, Any] = {}
    if preset:
        preset_path = PRESETS_DIR / f"{preset}.yaml"
        if not preset_path.is_file():
            raise ConfigError(f"unknown preset {preset!r}", where="--preset", hint=f"one of {', '.join(presets())}")
        data = _deep_merge(data, _read_yaml(preset_path))
    if isinstance(path, dict):
        data = _deep_merge(data, path)
    elif path is not None:
        data = _deep_merge(data, _read_yaml(Path(path)))
    items = overrides.items() if isinstance(overrides, dict) else [_parse_override(o) for o in overrides or []]
    for key, value in items:
        _set_path(data, key, value)
    return validate_config(data, source=str(path) if isinstance(path, (str, Path)) else "config")


def validate_config(data: dict[str, Any], *, source: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        problems = [f"{_loc(err['loc'])}: {_message(err)}" for err in exc.errors()]
        raise ConfigError(
            f"{len(problems)} invalid setting{'s' * (len(problems) > 1)}",
            where=source,
            issues=problems,
        ) from None


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config: {exc.strerror}", where=str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"not valid YAML: {getattr(exc, 'problem', exc)}", where=where) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("a config file must be a mapping of settings", where=str(path))
    return data


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not key=value", where="overrides",
                          hint="for example train.lr=1e-4 or method.rank=8")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if isinstance(child, str) and part in ("method", "objective"):
            child = {"type": child}  # `method: lora` shorthand, then `method.rank=8`
        if not isinstance(child, dict):
            child = {}
        node[part] = child
        node = child
    node[parts[-1]] = value


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            if key in ("method", "objective") and value.get("type", out[key].get("type")) != out[key].get("type"):
                out[key] = dict(value)  # a different method/objective replaces the old options wholesale
            else:
                out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _loc(loc: tuple) -> str:
    if loc[:2] == ("eval", "grader") and len(loc) > 2:
        return ".".join(filter(None, ("eval.grader", spec_path(loc[2:]))))
    parts: list[str] = []
    for i, item in enumerate(loc):
        if i == 1 and loc[0] in ("method", "objective"):
            continue  # pydantic's discriminator tag, not a user-visible key
        parts.append(f"[{item}]" if isinstance(item, int) else str(item))
    return ".".join(parts).replace(".[", "[") or "config"


def _message(err: dict) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown setting"
    if err["type"] == "union_tag_invalid":
        return f"unknown type {err['ctx']['tag']!r}; expected one of {err['ctx']['expected_tags']}"
    return err["msg"].removeprefix("Value error, ")
