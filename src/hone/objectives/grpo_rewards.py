"""Where GRPO's rewards come from: a grader spec (RFT) or a trained reward model's head (RLHF).

Both are `Reward`s: called with (texts, prompts) they return one float per completion and the
failures, `{"where", "message"}` for each completion a grader could not grade (it scores 0).
A grader is checked before training on the first `CHECKED_ITEMS` training items with an empty
answer: it must return a number for any answer (0 for a wrong or empty one), so one that errors
there stops the run at once. During training its errors are counted over the last
`objective.grader_error_window` answers; more than `objective.max_grader_error_rate` of a window
stops the run too, naming the grader and its errors, rather than training on rewards of 0.
"""

from __future__ import annotations

from collections import deque

from hone.data.formats import Example, assistant
from hone.errors import ConfigError, GraderError
from hone.methods.tuned import load_tuned
from hone.models.artifact import adapter_dir, read_manifest
from hone.objectives.score import score_examples
from hone.rewards import build_grader, grade_outputs
from hone.rewards.spec import load_spec

CHECKED_ITEMS = 3
MESSAGE_CHARS = 300  # a failure's message as recorded (a traceback line, not a page of output)
HINT = "a grader must return a number for every answer, 0 for a wrong, empty or unparseable one"


def load_reward(config):
    """The reward source an `objective: grpo` config names, built once (a judge model loads once)."""
    if config.grader is not None:
        return GraderReward(config)
    return ModelReward(config.reward_model)


class Reward:
    """Scores completions of prompts; `check` runs once before training."""

    def __call__(self, texts: list[str], prompts: list) -> tuple[list[float], list[dict]]:
        raise NotImplementedError

    def check(self, prompts: list) -> None:
        """Raise GraderError when this reward cannot score these (training) prompts' answers."""


class GraderReward(Reward):
    """Scores in [0, 1] from a grader spec; each item is the prompt's (`hone.data.prompts`)."""

    def __init__(self, config) -> None:
        spec = load_spec(config.grader, where="objective.grader")
        self.grader = build_grader(spec)
        self.label = f"{spec.type} grader" + (f" {spec.name!r}" if spec.name else "")
        self.max_rate, self.window = config.max_grader_error_rate, config.grader_error_window
        self.recent: deque[bool] = deque(maxlen=self.window)

    def __call__(self, texts: list[str], prompts: list) -> tuple[list[float], list[dict]]:
        grades = self._grade(texts, prompts)
        failures = [{"where": p.where, "message": g.reason[:MESSAGE_CHARS]} for g, p in zip(grades, prompts) if g.error]
        self.recent.extend(g.error for g in grades)
        errors = sum(self.recent)
        if errors > self.max_rate * self.window:
            raise GraderError(f"the {self.label} failed on {errors} of the last {len(self.recent)} answers, more than "
                              f"objective.max_grader_error_rate={self.max_rate:g} of a window of {self.window}",
                              where="objective.grader", issues=[f"{f['where']}: {f['message']}" for f in failures[:5]],
                              hint=HINT)
        return [g.score for g in grades], failures

    def check(self, prompts: list) -> None:
        first = prompts[:CHECKED_ITEMS]
        grades = self._grade([""] * len(first), first)
        failures = [f"{p.where}: {g.reason[:MESSAGE_CHARS]}" for g, p in zip(grades, first) if g.error]
        if failures:
            raise GraderError(f"the {self.label} failed on {len(failures)} of the first {len(first)} training items, "
                              "graded with an empty answer before training", where="objective.grader",
                              issues=failures, hint=HINT)

    def _grade(self, texts: list[str], prompts: list):
        return grade_outputs(self.grader, texts, [p.item for p in prompts])


class ModelReward(Reward):
    """Scores from a reward run's head on (prompt messages + the completion as the assistant reply)."""

    def __init__(self, run: str) -> None:
        kind = read_manifest(adapter_dir(run)).get("objective", {}).get("type")
        if kind != "reward":
            raise ConfigError(f"{run} was trained with objective {kind!r}; a reward model is a run trained with "
                              "objective: reward", where="objective.reward_model")
        self.model, self.tokenizer, self.manifest = load_tuned(run)
        self.model.requires_grad_(False)

    def __call__(self, texts: list[str], prompts: list) -> tuple[list[float], list[dict]]:
        examples = [Example(format="chat", messages=[*p.messages, assistant(text)], where=p.where)
                    for text, p in zip(texts, prompts)]
        return [r["score"] for r in score_examples(self.model, self.tokenizer, self.manifest, examples)], []
