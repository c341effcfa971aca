"""Metrics are graders: `metric: X` (`eval.metric`, `hone eval --metric X`, `hone.evaluate`) is
`grader: {type: X}`, for every grader type that needs no settings (`exact_match`, `json`, `labels`,
`string_check`, ...). An evaluation scores with one grader (`eval_grader`) on one path
(`score_outputs`), whichever way it was named.

`register_metric` plugs an in-process function in as a metric by name (tests, notebooks).
"""

from __future__ import annotations

from typing import Callable

from hone.errors import ConfigError, HoneError
from hone.rewards import GRADERS, build_grader, grade_outputs
from hone.rewards.grade import Grade, Grader, MetricGrader, mean_of_keys
from hone.rewards.spec import load_spec, validate_spec

REGISTERED: dict[str, MetricGrader] = {}


def register_metric(name: str, per_example: Callable[[str, str], dict[str, float]], *, primary: str,
                    aggregate: Callable[[list[dict[str, float]]], dict[str, float]] | None = None) -> MetricGrader:
    """Make `name` usable as `eval.metric` / `hone eval --metric`: `per_example(prediction, reference)
    -> {key: value}` scores one item, `primary` names the key that ranks wins and losses, and
    `aggregate` combines the items (default: the mean of each key)."""
    REGISTERED[name] = MetricGrader(name, per_example, primary, aggregate=aggregate or mean_of_keys)
    return REGISTERED[name]


def metric_names() -> list[str]:
    """Every name `metric:` accepts: the grader types that need no settings, and registered metrics."""
    return [name for name in GRADERS if _needs_no_settings(name)] + list(REGISTERED)


def _needs_no_settings(name: str) -> bool:
    try:
        validate_spec({"type": name})
    except ConfigError:
        return False
    return True


def metric_problem(name: str) -> str | None:
    """Why `name` is not a metric (for the config validator), or None."""
    if name in REGISTERED or (name in GRADERS and _needs_no_settings(name)):
        return None
    if name in GRADERS:
        return f"grader {name!r} needs settings; give it as eval.grader: {{type: {name}, ...}}"
    return f"unknown metric {name!r}; expected one of {', '.join(metric_names())}"


def metric_grader(name: str) -> Grader:
    """The grader a metric name stands for."""
    problem = metric_problem(name)
    if problem is not None:
        raise HoneError(problem, where="metric", hint=f"known metrics: {', '.join(metric_names())}")
    return REGISTERED.get(name) or build_grader(validate_spec({"type": name}, where="metric"))


def eval_grader(metric: str = "exact_match", grader=None) -> Grader:
    """The one grader an evaluation scores with: `grader` (a spec, or already built) when given, else the
    metric's. Bad input fails here, before any model loads."""
    if grader is None:
        return metric_grader(metric)
    return grader if isinstance(grader, Grader) else build_grader(load_spec(grader))


def score_outputs(grader: Grader, predictions: list, items: list[dict]) -> tuple[list[dict], dict, list[Grade]]:
    """(what each item keeps, the summary plus `n`, the grades) of `grader` on model outputs."""
    grades = grade_outputs(grader, predictions, items)
    summary = grader.summarize(grades) if grades else {}
    return [grader.per_item(g) for g in grades], {**summary, "n": len(grades)}, grades


def score(metric: str, predictions: list[str], references: list[str]) -> dict[str, float]:
    """A metric over predictions and their reference strings: its summary, plus `n`."""
    items = [{"reference": reference} for reference in references]
    return score_outputs(metric_grader(metric), predictions, items)[1]
