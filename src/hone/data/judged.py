"""Judged completions for KTO: a prompt and one reply marked desirable or undesirable.

They come from judged records (`{"prompt", "completion", "label": true|false}`) or from preference
pairs (the chosen reply desirable, the rejected one undesirable). Each unit also carries a
*mismatched* sequence: its own prompt followed by another unit's reply. KTO's reference point z0
is the policy's KL from the reference, estimated on such mismatched pairs (Ethayarajh et al. 2024,
section 4.1); fixing each unit's partner once here (a seeded cycle through the units, skipping
replies to the same prompt where it can) lets a method without an adapter score the reference of
both sequences before training, like DPO's stored reference.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hone.data.formats import Example
from hone.data.prepare import PreparedData, read_split
from hone.data.template import IGNORE, TokenizedExample, tokenize_example
from hone.errors import DataError

JUDGED_FORMATS = ("judged", "preference")


@dataclass
class JudgedCompletion:
    completion: TokenizedExample
    mismatched: TokenizedExample
    """This unit's prompt followed by another unit's reply: a sample for the KL estimate, never trained on."""
    desirable: bool
    where: str
    reference: tuple[float, float] | None = None
    """The start model's summed log-probs of (completion, mismatched) reply, where they are scored before training."""


def judged_examples(example: Example) -> list[tuple[list[dict], list[dict], bool]]:
    """(prompt messages, reply, desirable) for a judged record, or both sides of a preference pair."""
    if example.format == "judged":
        return [(example.messages, example.completion, example.desirable)]
    return [(example.messages, example.chosen, True), (example.messages, example.rejected, False)]


def split_at_reply(side: TokenizedExample) -> int:
    """The index of the first target token: everything before it is the prompt (with the reply's header)."""
    return next((i for i, label in enumerate(side.labels) if label != IGNORE), len(side.labels))


def mismatched_partners(prompts: list[tuple[int, ...]], seed: int) -> list[int]:
    """For each unit, another unit whose reply follows its prompt in the KL estimate: a seeded cycle,
    moved on past units of the same prompt while one with a different prompt remains."""
    order = list(range(len(prompts)))
    random.Random(seed).shuffle(order)
    partners = [0] * len(order)
    for k, i in enumerate(order):
        step = 1
        while step < len(order) - 1 and prompts[order[(k + step) % len(order)]] == prompts[i]:
            step += 1
        partners[i] = order[(k + step) % len(order)]
    return partners


def tokenize_judged(examples: list[Example], tokenizer, *, max_length: int, seed: int) -> list[JudgedCompletion]:
    sides, verdicts = [], []
    for example in examples:
        for messages, reply, desirable in judged_examples(example):
            conversation = Example(format="chat", messages=[*messages, *reply], where=example.where)
            sides.append(tokenize_example(conversation, tokenizer, loss_on="assistant", max_length=max_length))
            verdicts.append(desirable)
    cuts = [split_at_reply(side) for side in sides]
    prompts = [tuple(side.input_ids[:cut]) for side, cut in zip(sides, cuts)]
    units = []
    for i, j in enumerate(mismatched_partners(prompts, seed)):
        other = sides[j]
        ids = (list(prompts[i]) + other.input_ids[cuts[j]:])[:max_length]
        labels = ([IGNORE] * cuts[i] + other.labels[cuts[j]:])[:max_length]
        mismatched = TokenizedExample(ids, labels, other.where)
        units.append(JudgedCompletion(sides[i], mismatched, verdicts[i], sides[i].where))
    return units


def prepare_judged(data_config, tokenizer, *, seed: int, objective: str) -> PreparedData:
    """Read judged records and/or preference pairs, split off validation and tokenize; completions whose
    reply was cut away entirely by `max_length` are dropped and counted."""
    notes: list[str] = []
    train, validation = read_split(data_config, seed=seed, formats=JUDGED_FORMATS, objective=objective, notes=notes)

    def tokenize(examples):
        units = tokenize_judged(examples, tokenizer, max_length=data_config.max_length, seed=seed)
        truncated = sum(u.completion.truncated for u in units)
        if truncated:
            notes.append(f"{truncated} completions truncated to data.max_length={data_config.max_length}")
        kept = [u for u in units if any(t != IGNORE for t in u.completion.labels[1:])]
        if len(kept) < len(units):
            notes.append(f"{len(units) - len(kept)} completions dropped: no reply tokens left after truncation")
        return kept

    train_units, validation_units = tokenize(train), tokenize(validation)
    if not train_units:
        raise DataError("no usable training completions", where=data_config.train)
    desirable = sum(u.desirable for u in train_units)
    if len(train_units) == 1:
        notes.append("one training completion: its KL sample is its own reply, so z0 is its own log-ratio")
    describe = (f"data: {len(train_units)} train ({desirable} desirable, {len(train_units) - desirable} undesirable) "
                f"/ {len(validation_units)} validation judged completions")
    return PreparedData(train_units, validation_units, notes, describe)


def judged_length(unit: JudgedCompletion) -> int:
    return len(unit.completion.input_ids) + len(unit.mismatched.input_ids)
