"""Graders as data: a JSON-able spec chosen by `type` scores model outputs against items.

Each grader family is a module with `Config` (a pydantic model whose `type` literal names it) and
`build(config)`, which returns an object with `name` and `grade(samples, items) -> list[Grade]`.
Specs follow OpenAI's grader shapes where they exist (`string_check`, `text_similarity`,
`score_model`, `multi`); `json`, `numeric`, `python`, `model` and `tool_call` are hone's. The same spec serves
`hone grader`, `hone eval --grader`, `eval.grader` in a run config and, later, RL rewards.
"""

from __future__ import annotations

from types import ModuleType
from typing import Annotated, Any, Protocol, Union

from pydantic import Field, TypeAdapter

from hone.rewards import (json_match, label_model, model_judge, multi, numeric, python_function, string_check,
                          text_similarity, tool_call)
from hone.rewards.grade import Grade, as_sample, failed

GRADERS: dict[str, ModuleType] = {
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


class Grader(Protocol):
    name: str

    def grade(self, samples: list[dict], items: list[dict]) -> list[Grade]: ...


def build_grader(config, *, judge=None) -> Grader:
    """A grader for a validated spec (see `hone.rewards.spec.load_spec` for raw dicts/files).

    `judge`, a loaded `(model, tokenizer)`, serves every judge-model grader in the spec instead of
    loading the model it names (tests, or an RL loop that already holds the model).
    """
    if config.type in JUDGED:
        return GRADERS[config.type].build(config, judge=judge)
    if config.type == "multi":
        return multi.build(config, judge=judge)
    return GRADERS[config.type].build(config)


def grade_safely(grader: Grader, samples: list[dict], items: list[dict]) -> list[Grade]:
    """`grader.grade`, with an unexpected exception turned into a 0 for every sample (never a crash)."""
    from hone.errors import HoneError

    try:
        grades = grader.grade(samples, items)
    except HoneError:
        raise  # a configuration problem (e.g. a judge model that does not exist) is the user's to fix
    except Exception as exc:  # noqa: BLE001
        return [failed(f"{grader.name} failed: {type(exc).__name__}: {exc}") for _ in samples]
    return grades


def grade_outputs(grader, outputs: list[Any], items: list[dict], *, judge=None) -> list[Grade]:
    """Grade model outputs (strings or sample dicts) against their items, one Grade per output.

    `grader` is a validated spec (built here; `judge` as for `build_grader`)
    or an already built Grader: callers that grade many batches (an RL loop) build once with
    `build_grader` so a judge model is loaded once.
    """
    from hone.errors import HoneError

    if len(outputs) != len(items):
        raise HoneError(f"{len(outputs)} outputs for {len(items)} items", where="grader",
                        hint="pass one model output per item, in the same order")
    samples = [as_sample(output) for output in outputs]
    if not hasattr(grader, "grade"):
        grader = build_grader(grader, judge=judge)
    return grade_safely(grader, samples, items)


__all__ = ["GRADERS", "Grade", "Grader", "GraderConfig", "build_grader", "grade_outputs", "grade_safely"]
