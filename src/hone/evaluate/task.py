"""Score a model on a held-out chat file: generate each final assistant turn and grade it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hone.data.images import FILE_ID
from hone.data.prompts import task_item
from hone.data.read import read_examples
from hone.data.template import plain_prompt, text_prompt_ids
from hone.data.tools import reply_text
from hone.data.vision import data_dir
from hone.errors import DataError
from hone.models.generate import generate_batch, generate_from_ids
from hone.rewards.metric import eval_grader, score_outputs


@dataclass
class TaskItem:
    messages: list[dict]  # the conversation up to (not including) the reference turn
    reference: str  # the reference turn's text; its tool calls as <tool_call> lines (hone.data.tools)
    where: str
    tools: list[dict] | None = None  # the record's function tools, offered to the model


@dataclass
class EvalResult:
    metrics: dict
    predictions: list[str] = field(default_factory=list)
    items: list[TaskItem] = field(default_factory=list)
    grades: list = field(default_factory=list)  # one hone.rewards Grade per item


def read_task(path: str) -> list[TaskItem]:
    """Held-out items: every chat-like record's last assistant turn is the reference (with a function-calling
    record, its calls; the record's tools are offered when generating)."""
    examples, _ = read_examples(path, strict=True)
    items = []
    for ex in examples:
        if not ex.messages or ex.messages[-1]["role"] != "assistant":
            raise DataError("the last message must be the assistant's reference answer", where=ex.where)
        items.append(held_out(ex))
    return items


def held_out(example) -> TaskItem:
    """A chat example ending with an assistant turn as an item: the turns before it, its text (and calls);
    images given as paths relative to the data file are made absolute, so they are found from anywhere."""
    folder = data_dir(example.where)
    return TaskItem([with_image_paths({k: v for k, v in m.items() if k != "weight"}, folder)
                     for m in example.messages[:-1]],
                    reply_text(example.messages[-1]), example.where, example.tools)


def with_image_paths(message: dict, folder: Path | None) -> dict:
    """`message` with each image url that is a relative path joined to `folder` (its data file's)."""
    if "parts" not in message or folder is None:
        return message
    parts = [{**part, "url": str(folder / part["url"])} if part["type"] == "image" and relative_path(part["url"])
             else part for part in message["parts"]]
    return {**message, "parts": parts, "images": [part["url"] for part in parts if part["type"] == "image"]}


def relative_path(url: str) -> bool:
    return not url.startswith(("data:", "http://", "https://", "file://", "/", "~")) and not FILE_ID.fullmatch(url)


def evaluate_task(model, tokenizer, items: list[TaskItem], metric: str = "exact_match", *,
                  prompt: Callable[[list[dict]], list[dict]] | None = None,
                  max_new_tokens: int = 256, batch_size: int = 16, progress: bool = True,
                  grader=None) -> EvalResult:
    """Greedy-generate an answer per item (optionally re-prompted by `prompt`) and score it.

    `grader` (a spec: dict, JSON/YAML path, config or built grader), or else the `metric` grader, scores each
    prediction against the item `{messages, prompt, reference, where}`.
    """
    from tqdm.auto import tqdm

    scorer = eval_grader(metric, grader)  # a bad metric or spec fails before any generation
    conversations = [prompt(item.messages) if prompt else item.messages for item in items]
    with tqdm(total=len(items), desc="eval", unit="ex", disable=not progress) as bar:
        if tokenizer.chat_template:
            predictions = generate_batch(model, tokenizer, conversations, max_new_tokens=max_new_tokens,
                                         batch_size=batch_size, progress=bar.update,
                                         tools=[item.tools for item in items])
        else:  # a base model: prompted with the conversation as plain text
            encoded = [text_prompt_ids(plain_prompt(c), tokenizer) for c in conversations]
            predictions = generate_from_ids(model, tokenizer, encoded, max_new_tokens=max_new_tokens,
                                            batch_size=batch_size, progress=bar.update)
    records = [task_item(item.messages, item.reference, item.where) for item in items]
    _, metrics, grades = score_outputs(scorer, predictions, records)
    return EvalResult(metrics, predictions, items, grades)
