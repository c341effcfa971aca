"""docs/configuration.md is generated from the schema and current; every setting is documented once;
presets write only what differs from the defaults."""

from pathlib import Path

import pytest
import yaml

from hone.config.load import PRESETS_DIR, presets
from hone.config.reference import REGENERATE, render_reference
from hone.config.schema import RunConfig

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _models(model, seen=None):
    """Every config section reachable from `model` (methods, objectives and graders included)."""
    from hone.config.reference import _models_in

    seen = seen if seen is not None else {}
    if model not in seen:
        seen[model] = None
        for field in model.model_fields.values():
            for inner in _models_in(field.annotation):
                _models(inner, seen)
    return list(seen)


def test_the_configuration_reference_is_current():
    assert PAGE.read_text(encoding="utf-8") == render_reference(), (
        f"docs/configuration.md is out of date: run `{REGENERATE}` and commit the result")


def test_every_run_setting_has_a_description():
    sections = _models(RunConfig)
    assert len(sections) > 15  # the walk reaches each method's and objective's options
    missing = [f"{model.__module__}.{model.__name__}.{name}" for model in sections
               for name, field in model.model_fields.items() if name != "type" and not field.description]
    assert not missing, "give these fields a docstring (or Field(description=...)): " + ", ".join(missing)


def _leaves(data, prefix=""):
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.mark.parametrize("preset", presets())
def test_presets_write_only_what_differs_from_the_defaults(preset):
    written = dict(_leaves(yaml.safe_load((PRESETS_DIR / f"{preset}.yaml").read_text())))
    defaults = dict(_leaves(RunConfig().model_dump(mode="json")))
    choices = {"model", "method", "objective"}  # what the preset is about, named even when it is the default
    same = [key for key, value in written.items() if key not in choices and defaults.get(key) == value]
    assert not same, f"preset {preset} repeats defaults: {same}"
