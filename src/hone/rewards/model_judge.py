"""`model` / `score_model`: a judge model reads a rubric and the output and answers with a score.

The judge is any model hone can load (a base model or a tuned run's adapter) and runs through hone's
own batched greedy generation (`hone.models.generate`). Give either a `rubric` (hone writes the
prompt: the rubric, the item's prompt and reference when it has them, the output) or `input`, chat
messages with `{{...}}` templates (OpenAI's `score_model` shape). The first number in the judge's
answer is the score, mapped from `range` onto [0, 1]; no number, or one outside the range, scores 0
with the judge's text in the reason.

An item with images (a vision task): a vision-language judge is shown them with the prompt; a
text-only judge reads the text only, and its prompt (with a rubric) and each grade's reason say so.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from hone.config.base import Section
from hone.data.formats import conversation_image_parts
from hone.data.vision import processor_for
from hone.rewards.grade import Grade, Grader, GraderBase, TemplateError, check_template, failed, render

SCORE = re.compile(r"[-+]?\d+(?:\.\d+)?")


class Message(Section):
    role: Literal["system", "user", "assistant"]
    content: str

    _template = field_validator("content")(check_template)


class Config(GraderBase):
    type: Literal["model", "score_model"] = "model"
    model: str | None = None
    """The judge: a shipped name, model directory, .gguf file or hub id (default: the default model)."""
    adapter: str | None = None
    """A tuned run (or its adapter/) to judge with instead of `model`."""
    rubric: str | None = None
    input: list[Message] | None = None
    range: tuple[float, float] = (0.0, 10.0)
    """The judge's scale: its answer lo..hi becomes 0..1."""
    max_new_tokens: int = Field(16, gt=0, le=4096)
    batch_size: int = Field(16, gt=0)

    @model_validator(mode="after")
    def _rubric_or_input(self):
        if (self.rubric is None) == (self.input is None):
            raise ValueError("give a rubric or input messages (one of the two)")
        if self.model is not None and self.adapter is not None:
            raise ValueError("give a model or an adapter, not both")
        if self.range[1] <= self.range[0]:
            raise ValueError(f"range {list(self.range)} must go from low to high")
        return self


def parse_score(text: str, low: float, high: float) -> Grade:
    """The judge's first number as a score in [0, 1], or 0 saying why none could be read."""
    match = SCORE.search(text)
    shown = repr(text if len(text) <= 60 else text[:59] + "…")
    if match is None:
        return failed(f"unparseable judge output {shown}", judge_output=text)
    value = float(match.group())
    if not low <= value <= high:
        return failed(f"judge score {value:g} outside {low:g}..{high:g} in {shown}", judge_output=text)
    return Grade((value - low) / (high - low), f"judge said {value:g} of {low:g}..{high:g}", details={"judge_output": text})


def item_image_parts(item: dict) -> list[dict]:
    """The image parts of an item's conversation (a held-out vision example), in order."""
    messages = item.get("messages") if isinstance(item.get("messages"), list) else []
    return conversation_image_parts([m for m in messages if isinstance(m, dict)])


def rubric_messages(config: Config, sample: dict, item: dict, *, sees_images: bool = False) -> list[dict]:
    """The prompt hone writes around a rubric; the item's prompt and reference go in when it has them
    (and, when the judge cannot see the item's images, a line saying it reads the text only)."""
    low, high = config.range
    parts = [f"Rubric:\n{config.rubric}"]
    for label, key in (("Task", "prompt"), ("Reference answer", "reference")):
        if isinstance(item.get(key), str):
            parts.append(f"{label}:\n{item[key]}")
    hidden = len(item_image_parts(item)) if not sees_images else 0
    if hidden:
        parts.append(f"(The task came with {hidden} image{'s' * (hidden > 1)}, which you are not shown: judge from "
                     "the text only.)")
    parts.append(f"Answer to grade:\n{sample['output_text']}")
    parts.append(f"Reply with only a number from {low:g} to {high:g}.")
    system = "You are a strict grader. Score the answer against the rubric."
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(parts)}]


class ModelJudge(Grader):
    """Loads the judge on first use (or takes a loaded `(model, tokenizer)`) and grades in batches.

    `parse(answer) -> Grade` reads the judge's answer (a score here, a label for `label_model`).
    """

    def __init__(self, config, judge=None, parse=None) -> None:
        self.config = config
        self.name = config.name or config.type
        self.judge = judge
        self.parse = parse or (lambda answer: parse_score(answer, *config.range))

    def grade(self, samples: list[dict], items: list[dict]) -> list[Grade]:
        grades: list[Grade | None] = [None] * len(samples)
        sees_images = None
        prompts, positions = [], []
        for i, (sample, item) in enumerate(zip(samples, items)):
            if sees_images is None and item_image_parts(item):
                sees_images = processor_for(self._load()[1]) is not None
            try:
                prompts.append(self._messages(sample, item, sees_images=bool(sees_images)))
                positions.append(i)
            except TemplateError as exc:
                grades[i] = failed(str(exc))
        if prompts:
            from hone.models.generate import generate_batch  # torch: only when a judge runs

            model, tokenizer = self._load()
            answers = generate_batch(model, tokenizer, prompts, max_new_tokens=self.config.max_new_tokens,
                                     batch_size=self.config.batch_size)
            for i, answer in zip(positions, answers):
                grades[i] = self.parse(answer)
                hidden = len(item_image_parts(items[i])) if not sees_images else 0
                if hidden:
                    grades[i].reason += f" (a text-only judge: the item's {hidden} image(s) were not shown to it)"
        return grades

    def _messages(self, sample: dict, item: dict, *, sees_images: bool = False) -> list[dict]:
        if getattr(self.config, "rubric", None) is not None:
            messages = rubric_messages(self.config, sample, item, sees_images=sees_images)
        else:
            messages = [{"role": m.role, "content": render(m.content, sample, item)} for m in self.config.input]
        return with_images(messages, item_image_parts(item)) if sees_images else messages

    def _load(self):
        if self.judge is None:
            from hone.methods.tuned import load_for_inference  # torch and transformers: only when a judge runs

            self.judge = load_for_inference(adapter=self.config.adapter, model=self.config.model)
        return self.judge


def with_images(messages: list[dict], images: list[dict]) -> list[dict]:
    """A judge prompt whose first user message shows `images` (image parts) before its text."""
    if not images:
        return messages
    first = next((k for k, m in enumerate(messages) if m["role"] == "user"), None)
    if first is None:
        return messages
    user = messages[first]
    shown = {**user, "parts": [*images, {"type": "text", "text": user["content"]}],
             "images": [part["url"] for part in images]}
    return [*messages[:first], shown, *messages[first + 1:]]


def build(config: Config, judge=None) -> ModelJudge:
    return ModelJudge(config, judge)
