"""Graders as data: a JSON-able spec chosen by `type` scores model outputs against items.

Each grader family is a module with `Config` (a pydantic model whose `type` literal names it) and
`build(config)`, which returns an object with `name` and `grade(samples, items) -> list[Grade]`.
Specs follow OpenAI's grader shapes where they exist (`string_check`, `text_similarity`,
`score_model`, `multi`); `exact_match`, `json`, `labels`, `numeric`, `python`, `model` and `tool_call` are
hone's. The same spec serves `hone grader`, `hone eval --grader`, `eval.grader` in a run config and RL
rewards; a metric (`eval.metric`, `hone eval --metric`) is a grader named by its type alone
(`hone.rewards.metric`). The built grader (`hone.rewards.grade.Grader`) says what its grades report.
"""

from __future__ import annotations

from types import ModuleType
from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter

from hone.errors import HoneError
from hone.rewards import (exact_match, json_match, label_model, labels, model_judge, multi, numeric, python_function,
                          string_check, text_similarity, tool_call)
from hone.rewards.grade import Grade, Grader, as_sample, grade_safely

GRADERS: dict[str, ModuleType] = {
    "exact_match": exact_match,
    "labels": labels,
    "string_check": string_check,
    "json": json_match,
    "numeric": numeric,
    "text_similarity": text_similarity,
    "python": python_function,
    "model": model_judge,
    "score_model": model_judge,
    "label_model": label_model,
    "multi": multi,
    "tool_call": tool_call,
}
JUDGED = ("model", "score_model", "label_model")
GRADER_CONFIGS = list(dict.fromkeys(module.Config for module in GRADERS.values()))
GraderConfig = Annotated[Union[tuple(GRADER_CONFIGS)], Field(discriminator="type")]
multi.Config.model_rebuild(_types_namespace={"GraderConfig": GraderConfig})
SPEC = TypeAdapter(GraderConfig)


def build_grader(config, *, judge=None) -> Grader:
    """A grader for a validated spec (see `hone.rewards.spec.load_spec` for raw dicts/files).

    `judge`, a loaded `(model, tokenizer)`, serves every judge-model grader in the spec instead of
    loading the model it names (tests, or an RL loop that already holds the model).
    """
    if config.type in JUDGED:
        return GRADERS[config.type].build(config, judge=judge)
    if config.type == "multi":
        return multi.build(config, lambda spec: build_grader(spec, judge=judge))
    return GRADERS[config.type].build(config)


def python_graders(spec: dict) -> list[dict]:
    """The python graders in a spec given as data (a `multi`'s included), e.g. to check where they run."""
    if not isinstance(spec, dict):
        return []
    if spec.get("type") == "python":
        return [spec]
    graders = spec.get("graders") if spec.get("type") == "multi" else None
    return [found for sub in (graders or {}).values() for found in python_graders(sub)]
def grade_outputs(grader, outputs: list[Any], items: list[dict], *, judge=None) -> list[Grade]:
    """Grade model outputs (strings or sample dicts) against their items, one Grade per output.

    `grader` is a validated spec (built here; `judge` as for `build_grader`)
    or an already built Grader: callers that grade many batches (an RL loop) build once with
    `build_grader` so a judge model is loaded once.
    """
    if len(outputs) != len(items):
        raise HoneError(f"{len(outputs)} outputs for {len(items)} items", where="grader",
                        hint="pass one model output per item, in the same order")
    samples = [as_sample(output) for output in outputs]
    if not isinstance(grader, Grader):
        grader = build_grader(grader, judge=judge)
    return grade_safely(grader, samples, items)


__all__ = ["GRADERS", "Grade", "Grader", "GraderConfig", "build_grader", "grade_outputs", "grade_safely",
           "python_graders"]
