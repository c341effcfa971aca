"""Where GRPO's rewards come from: a grader spec (RFT) or a trained reward model's head (RLHF).

Both are callables `(texts, prompts) -> (scores, errors)`: one float per completion and the number
of completions a grader could not grade (they score 0 with the reason recorded, never a crash).
"""

from __future__ import annotations

from hone.data.formats import Example, assistant
from hone.errors import ConfigError
from hone.methods.tuned import load_tuned
from hone.models.artifact import adapter_dir, read_manifest
from hone.objectives.score import score_examples
from hone.rewards import build_grader, grade_outputs
from hone.rewards.spec import load_spec


def load_reward(config):
    """The reward source an `objective: grpo` config names, built once (a judge model loads once)."""
    if config.grader is not None:
        return GraderReward(config.grader)
    return ModelReward(config.reward_model)


class GraderReward:
    """Scores in [0, 1] from a grader spec; each item is the prompt's (`hone.data.prompts`)."""

    def __init__(self, spec) -> None:
        self.grader = build_grader(load_spec(spec, where="objective.grader"))

    def __call__(self, texts: list[str], prompts: list) -> tuple[list[float], int]:
        grades = grade_outputs(self.grader, texts, [p.item for p in prompts])
        return [g.score for g in grades], sum(g.error for g in grades)


class ModelReward:
    """Scores from a reward run's head on (prompt messages + the completion as the assistant reply)."""

    def __init__(self, run: str) -> None:
        kind = read_manifest(adapter_dir(run)).get("objective", {}).get("type")
        if kind != "reward":
            raise ConfigError(f"{run} was trained with objective {kind!r}; a reward model is a run trained with "
                              "objective: reward", where="objective.reward_model")
        self.model, self.tokenizer, self.manifest = load_tuned(run)
        self.model.requires_grad_(False)

    def __call__(self, texts: list[str], prompts: list) -> tuple[list[float], int]:
        examples = [Example(format="chat", messages=[*p.messages, assistant(text)], where=p.where)
                    for text, p in zip(texts, prompts)]
        return [r["score"] for r in score_examples(self.model, self.tokenizer, self.manifest, examples)], 0
