"""Scoring with a trained head: a reward model's score for each response, a classifier's label.

Records are tokenized exactly as in training (the chat template for conversations, raw text plus
eos for classification) and scored one padded row each.
"""

from __future__ import annotations

import math

from hone.data.formats import Example
from hone.data.read import read_examples
from hone.data.template import IGNORE, TokenizedExample, tokenize_example
from hone.errors import DataError, HoneError
from hone.objectives.classify import tokenize_text
from hone.objectives.reward import score_sequences

REWARD_FORMATS = ("chat", "prompt_completion", "alpaca", "preference")
CLASSIFY_FORMATS = ("labelled", "text")


def score_examples(model, tokenizer, manifest: dict, examples: list[Example], *, batch_size: int = 16) -> list[dict]:
    """One result per example: `{"where", "score"}` (reward; `chosen_score`, `rejected_score` and `correct`
    for a preference pair) or `{"where", "label", "probabilities"}` (classify; `gold` when labelled)."""
    objective = manifest.get("objective", {})
    kind = objective.get("type")
    max_length = manifest.get("data", {}).get("max_length")
    if kind == "reward":
        return _score_rewards(model, tokenizer, examples, max_length, batch_size)
    if kind == "classify":
        return _classify(model, tokenizer, examples, objective["labels"], max_length, batch_size)
    raise HoneError(f"this artifact was trained with objective {kind!r}, which has no scoring head",
                    hint="score with a run trained with objective: reward or objective: classify")


def read_for_scoring(path: str, kind: str) -> list[Example]:
    """Read a JSONL file strictly and check every record fits what the objective scores."""
    formats = REWARD_FORMATS if kind == "reward" else CLASSIFY_FORMATS
    examples, _ = read_examples(path, strict=True)
    wrong = [e for e in examples if e.format not in formats]
    if wrong:
        raise DataError(f"{len(wrong)} records cannot be scored by a {kind} model", where=path,
                        issues=[f"{e.where}: is a {e.format} record" for e in wrong[:20]],
                        hint=f"a {kind} model scores {', '.join(formats)} records")
    return examples


def _score_rewards(model, tokenizer, examples, max_length, batch_size) -> list[dict]:
    sequences, owners = [], []
    for n, example in enumerate(examples):
        if example.format == "preference":
            for reply in (example.chosen, example.rejected):
                sequences.append(_conversation(example, reply, tokenizer, max_length))
                owners.append(n)
        else:
            if example.messages[-1]["role"] != "assistant":
                raise DataError("the conversation does not end with an assistant reply to score", where=example.where)
            sequences.append(tokenize_example(example, tokenizer, loss_on="assistant", max_length=max_length))
            owners.append(n)
    scores = [s[0] for s in score_sequences(model, sequences, tokenizer.pad_token_id, batch_size)]
    results: list[dict] = [{"where": e.where} for e in examples]
    for owner, value in zip(owners, scores):
        results[owner].setdefault("scores", []).append(value)
    for result in results:
        values = result.pop("scores")
        if len(values) == 1:
            result["score"] = values[0]
        else:
            result.update(chosen_score=values[0], rejected_score=values[1], correct=values[0] > values[1])
    return results


def _conversation(example, reply, tokenizer, max_length):
    conversation = Example(format="chat", messages=[*example.messages, *reply], where=example.where)
    return tokenize_example(conversation, tokenizer, loss_on="assistant", max_length=max_length)


def _classify(model, tokenizer, examples, labels, max_length, batch_size) -> list[dict]:
    sequences = []
    for e in examples:
        ids = tokenize_text(e.text, tokenizer, max_length)
        sequences.append(TokenizedExample(ids, [IGNORE] * len(ids), e.where))
    results = []
    for example, logits in zip(examples, score_sequences(model, sequences, tokenizer.pad_token_id, batch_size)):
        top = max(logits)
        exp = [math.exp(v - top) for v in logits]
        probabilities = {label: p / sum(exp) for label, p in zip(labels, exp)}
        result = {"where": example.where, "label": max(probabilities, key=probabilities.get),
                  "probabilities": probabilities}
        if example.label is not None:
            result["gold"] = example.label
        results.append(result)
    return results
