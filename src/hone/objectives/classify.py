"""Sequence classification: a head over the classes on the last token of each text, cross-entropy.

Data is labelled JSONL `{"text", "label"}`; the label set is the sorted set of training labels and
is saved in hone.json (`objective.labels`), the head beside the method's weights. With `shots: k`
the training set is cut to k examples per class, drawn stratified and seeded (few-shot mode).
Texts are tokenized raw (no chat template) with the end-of-sequence token appended, so the head
always reads the same kind of position: the eos that closes the text.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field

from hone.config.base import Section
from hone.data.batching import Batching
from hone.data.collate import collate_sequences
from hone.data.prepare import PreparedData, read_split
from hone.data.read import Issue
from hone.data.template import IGNORE, TokenizedExample, eos_id
from hone.errors import DataError
from hone.models.heads import attach_head, save_head
from hone.objectives.base import Objective, ObjectiveKind
from hone.objectives.heads import head_outputs

FORMATS = ("labelled",)


class Config(Section):
    type: Literal["classify"] = "classify"
    shots: int | None = Field(None, gt=0)
    """Few-shot mode: train on this many examples per class (stratified, seeded by train.seed)."""


def build(config: Config) -> "Classify":
    return Classify(config)


@dataclass
class LabelledText:
    input_ids: list[int]
    label: int
    where: str


def tokenize_text(text: str, tokenizer, max_length: int | None) -> list[int]:
    """Raw text tokens with eos appended; a long text keeps its start and still ends with eos."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if max_length is not None and len(ids) + 1 > max_length:
        ids = ids[: max_length - 1]
    return list(ids) + [eos_id(tokenizer)]


def few_shot(examples, shots: int, seed: int):
    """k examples per class, drawn in a seeded order within each class (fewer where a class has fewer)."""
    by_label = defaultdict(list)
    for example in examples:
        by_label[example.label].append(example)
    rng = random.Random(f"hone-shots:{seed}")
    chosen = []
    for label in sorted(by_label):
        group = list(by_label[label])
        rng.shuffle(group)
        chosen += group[:shots]
    return chosen


def classification_metrics(predicted: list[int], gold: list[int], labels: list[str]) -> dict:
    """Accuracy, per-class and macro precision/recall/F1, and the confusion matrix (rows gold, cols predicted).

    A class never predicted has precision 0; one absent from `gold` has recall 0 (and counts in macro).
    """
    k = len(labels)
    confusion = [[0] * k for _ in range(k)]
    for p, g in zip(predicted, gold):
        confusion[g][p] += 1
    per_class = {}
    for i, label in enumerate(labels):
        tp = confusion[i][i]
        predicted_i = sum(confusion[r][i] for r in range(k))
        gold_i = sum(confusion[i])
        precision = tp / predicted_i if predicted_i else 0.0
        recall = tp / gold_i if gold_i else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": gold_i}
    macro = {m: sum(c[m] for c in per_class.values()) / k for m in ("precision", "recall", "f1")}
    total = len(gold)
    return {"accuracy": sum(confusion[i][i] for i in range(k)) / total if total else 0.0,
            "macro_precision": macro["precision"], "macro_recall": macro["recall"], "macro_f1": macro["f1"],
            "per_class": per_class, "confusion": confusion, "labels": labels}


def _issue(where: str, field: str, message: str) -> Issue:
    path, line = where.rsplit(":", 1)
    return Issue(path, int(line), field, message)


class Classify(Objective):
    """Labelled texts in, cross-entropy over the classes out; the unit is a text."""

    name = "classify"

    def __init__(self, config: Config) -> None:
        self.config = config

    def prepare(self, data_config, tokenizer, seed: int):
        notes: list[str] = []
        train, validation = read_split(data_config, seed=seed, formats=FORMATS, objective=self.name,
                                       notes=notes)
        if self.config.shots:
            before = len(train)
            train = few_shot(train, self.config.shots, seed)
            notes.append(f"few-shot: {len(train)} of {before} training texts ({self.config.shots} per class)")
        labels = sorted({e.label for e in train})
        if len(labels) < 2:
            raise DataError(f"the training data has {len(labels)} label(s); classification needs at least 2",
                            where=data_config.train)
        unknown = [_issue(e.where, "label", f"is {e.label!r}, which no training example has")
                   for e in validation if e.label not in labels]
        if unknown:
            raise DataError(f"{len(unknown)} validation labels are not in the training data",
                            where=data_config.validation or data_config.train, issues=unknown[:20],
                            hint=f"training labels: {', '.join(labels)}")
        index = {label: i for i, label in enumerate(labels)}

        def tokenize(examples):
            return [LabelledText(tokenize_text(e.text, tokenizer, data_config.max_length), index[e.label], e.where)
                    for e in examples]

        counts = {label: sum(e.label == label for e in train) for label in labels}
        describe = (f"data: {len(train)} train / {len(validation)} validation texts, {len(labels)} classes ("
                    + ", ".join(f"{label} {n}" for label, n in counts.items()) + ")")
        return PreparedData(tokenize(train), tokenize(validation), notes, describe, info={"labels": labels})

    def length(self, unit) -> int:
        return len(unit.input_ids)

    def collate(self, units, batching: Batching) -> dict:
        sequences = [TokenizedExample(u.input_ids, [IGNORE] * len(u.input_ids), u.where) for u in units]
        batch = collate_sequences(sequences, [[i] for i in range(len(units))], batching)
        batch["labels"] = torch.tensor([u.label for u in units], dtype=torch.long)
        return batch

    def validation_batches(self, units, batching: Batching) -> list[dict]:
        return [self.collate(units[i:i + 16], batching) for i in range(0, len(units), 16)]

    def attach(self, model, data):
        self.labels = data.info["labels"]
        return attach_head(model, len(self.labels))

    def save(self, model, directory) -> None:
        save_head(model, directory)

    def manifest(self, data) -> dict:
        return {"labels": data.info["labels"], "head": "head.safetensors"}

    def units(self, batch) -> int:
        return int(batch["labels"].shape[0])

    def loss(self, model, batch):
        logits = head_outputs(model, batch)
        loss_sum = torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="sum")
        return loss_sum, {"loss_sum": loss_sum.item(), "predicted": logits.argmax(-1).tolist(),
                          "gold": batch["labels"].tolist()}

    def report(self, parts: list[dict], loss: float, *, validation: bool) -> dict:
        predicted = [p for part in parts for p in part["predicted"]]
        gold = [g for part in parts for g in part["gold"]]
        if not validation:
            return {"accuracy": sum(p == g for p, g in zip(predicted, gold)) / max(len(gold), 1)}
        metrics = classification_metrics(predicted, gold, self.labels)
        metrics.pop("labels")
        return metrics


KIND = ObjectiveKind("classify", Config, build, FORMATS)
