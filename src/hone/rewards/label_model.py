"""`label_model`: a judge model picks a label; the output passes when the label is a passing one.

OpenAI's grader of the same name: `input` chat messages with `{{...}}` templates, `labels` the judge
may answer with, `passing_labels` the ones that score 1. The judge's answer is read as the label it
names first (whole word, ignoring case); an answer naming no label scores 0 with its text.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from hone.rewards.grade import Grade, GraderBase, failed
from hone.rewards.model_judge import Message, ModelJudge


class Config(GraderBase):
    type: Literal["label_model"] = "label_model"
    model: str | None = None
    """The judge (default: the default model); or `adapter`, a tuned run."""
    adapter: str | None = None
    input: list[Message] = Field(min_length=1)
    labels: list[str] = Field(min_length=2)
    passing_labels: list[str] = Field(min_length=1)
    max_new_tokens: int = Field(16, gt=0, le=4096)
    batch_size: int = Field(16, gt=0)

    @model_validator(mode="after")
    def _passing_are_labels(self):
        unknown = [label for label in self.passing_labels if label not in self.labels]
        if unknown:
            raise ValueError(f"passing_labels {unknown} are not among labels {self.labels}")
        if self.model is not None and self.adapter is not None:
            raise ValueError("give a model or an adapter, not both")
        return self


def parse_label(answer: str, labels: list[str], passing: list[str]) -> Grade:
    """The first label named in `answer` and whether it passes; 0 with the answer when none is named."""
    found = [(m.start(), label) for label in labels
             for m in [re.search(rf"(?<!\w){re.escape(label)}(?!\w)", answer, re.IGNORECASE)] if m]
    if not found:
        shown = repr(answer if len(answer) <= 60 else answer[:59] + "…")
        return failed(f"the judge named none of {labels} in {shown}", judge_output=answer)
    label = min(found)[1]
    ok = label in passing
    return Grade(float(ok), f"judge said {label!r} ({'passing' if ok else 'not passing'})",
                 details={"label": label, "judge_output": answer})


def build(config: Config, judge=None) -> ModelJudge:
    return ModelJudge(config, judge, parse=lambda answer: parse_label(answer, config.labels, config.passing_labels))
