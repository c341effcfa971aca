"""Prompts for RL objectives (GRPO): what to sample replies to, and the item a grader compares them with.

Graded prompts (`{"messages": [... ending with a user turn], **fields}`, OpenAI's reinforcement
fine-tuning shape) keep their other fields as the item, so a grader reads them as `{{item.<field>}}`.
Supervised records (chat, prompt/completion, alpaca) are taken too: their last assistant turn is
held out as `{{item.reference}}`, as `hone eval` does, so the SFT data of a task serves its RL stage.
Every item also has `messages` (the prompt conversation), `prompt` (its last user message) and
`where` (file:line) unless the record sets them itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from hone.data.prepare import PreparedData, read_split
from hone.data.template import prompt_ids
from hone.errors import DataError

PROMPT_FORMATS = ("graded_prompt", "chat", "prompt_completion", "alpaca")


@dataclass
class PromptUnit:
    """One prompt: its generation-prompt token ids, its messages and the grader's item."""

    ids: list[int]
    messages: list[dict]
    item: dict
    where: str


def task_item(messages: list[dict], reference: str, where: str = "") -> dict:
    """The item a held-out chat example becomes: `{messages, prompt, reference, where}`.

    `messages` is the conversation before the reference turn, `prompt` its last user message,
    `reference` the held-out assistant answer; templates read them as `{{item.reference}}` etc.
    """
    prompt = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
    return {"messages": messages, "prompt": prompt, "reference": reference, "where": where}


def prompt_unit(example, tokenizer) -> PromptUnit:
    """A graded prompt as it is; a supervised record with its last assistant turn as the reference."""
    messages = [{"role": m["role"], "content": m["content"]} for m in example.messages]
    if example.format == "graded_prompt":
        item = {**task_item(messages, "", example.where), **(example.item or {})}
        if "reference" not in (example.item or {}):
            item.pop("reference")
    else:
        reference, messages = messages[-1]["content"], messages[:-1]
        item = task_item(messages, reference, example.where)
    return PromptUnit(prompt_ids(messages, tokenizer), messages, item, example.where)


def prepare_prompts(data_config, tokenizer, *, seed: int, objective: str) -> PreparedData:
    """Read prompt files, split off validation prompts and tokenize them; prompts longer than
    `data.max_length` tokens are dropped and counted (their replies come on top, up to max_new_tokens)."""
    notes: list[str] = []
    train, validation = read_split(data_config, seed=seed, formats=PROMPT_FORMATS, objective=objective, notes=notes)

    def tokenize(examples):
        units = [prompt_unit(e, tokenizer) for e in examples]
        kept = [u for u in units if len(u.ids) <= data_config.max_length]
        if len(kept) < len(units):
            notes.append(f"{len(units) - len(kept)} prompts dropped: longer than data.max_length="
                         f"{data_config.max_length} tokens")
        return kept

    train_units, validation_units = tokenize(train), tokenize(validation)
    if not train_units:
        raise DataError("no usable training prompts", where=data_config.train)
    tokens = sum(len(u.ids) for u in train_units)
    describe = (f"data: {len(train_units)} train / {len(validation_units)} validation prompts, "
                f"{tokens:,} prompt tokens")
    return PreparedData(train_units, validation_units, notes, describe)
