"""`text_similarity`: how close the output is to a reference text (fuzzy ratio, BLEU or ROUGE-L).

The score is the similarity in [0, 1]; `pass_threshold`, when set, adds `passed` to the details
(OpenAI's grader of the same name). Text is split into words and punctuation marks for BLEU and
ROUGE-L; `fuzzy_match` compares characters.

- `fuzzy_match`: difflib's ratio 2·M / (len(a) + len(b)), M the characters in matching blocks.
- `bleu`: sentence BLEU-4 (Papineni et al. 2002) with uniform weights and the brevity penalty
  exp(1 - r/c) when the output is shorter. Departure: a single sentence often has no 4-gram match,
  which makes plain BLEU 0, so precisions for n ≥ 2 are add-one smoothed, (m + 1) / (t + 1)
  (Lin & Och 2004); unigram precision is not smoothed, so no word in common still scores 0.
- `rouge_l`: the F1 of LCS precision (LCS / output words) and recall (LCS / reference words).
"""

from __future__ import annotations

import difflib
import math
import re
from collections import Counter
from typing import Literal

from pydantic import Field, field_validator

from hone.rewards.grade import Grade, GraderBase, PerItem, check_template, render

WORD = re.compile(r"\w+|[^\w\s]")


class Config(GraderBase):
    type: Literal["text_similarity"] = "text_similarity"
    evaluation_metric: Literal["fuzzy_match", "bleu", "rouge_l"] = "fuzzy_match"
    input: str = "{{sample.output_text}}"
    reference: str = "{{item.reference}}"
    case_sensitive: bool = True
    pass_threshold: float | None = Field(None, ge=0, le=1)

    _templates = field_validator("input", "reference")(check_template)


def words(text: str) -> list[str]:
    return WORD.findall(text)


def fuzzy_ratio(a: str, b: str) -> float:
    if not a and not b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def bleu(hypothesis: list[str], reference: list[str], max_n: int = 4) -> float:
    """Sentence BLEU of token lists: brevity penalty × geometric mean of clipped n-gram precisions."""
    if not hypothesis or not reference:
        return float(hypothesis == reference)
    log_total = 0.0
    for n in range(1, max_n + 1):
        hyp, ref = _ngrams(hypothesis, n), _ngrams(reference, n)
        matches, total = sum((hyp & ref).values()), sum(hyp.values())
        if n == 1 and matches == 0:
            return 0.0
        precision = matches / total if n == 1 else (matches + 1) / (total + 1)
        log_total += math.log(precision) / max_n
    brevity = 1.0 if len(hypothesis) >= len(reference) else math.exp(1 - len(reference) / len(hypothesis))
    return brevity * math.exp(log_total)


def rouge_l(hypothesis: list[str], reference: list[str]) -> float:
    """ROUGE-L F1 from the longest common subsequence of two token lists."""
    if not hypothesis or not reference:
        return float(hypothesis == reference)
    lcs = lcs_length(hypothesis, reference)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(hypothesis), lcs / len(reference)
    return 2 * precision * recall / (precision + recall)


def lcs_length(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def similarity(metric: str, text: str, reference: str) -> float:
    if metric == "fuzzy_match":
        return fuzzy_ratio(text, reference)
    return (bleu if metric == "bleu" else rouge_l)(words(text), words(reference))


def build(config: Config) -> PerItem:
    def grade_one(sample: dict, item: dict) -> Grade:
        text, reference = render(config.input, sample, item), render(config.reference, sample, item)
        if not config.case_sensitive:
            text, reference = text.casefold(), reference.casefold()
        value = similarity(config.evaluation_metric, text, reference)
        details = {config.evaluation_metric: value}
        if config.pass_threshold is not None:
            details["passed"] = value >= config.pass_threshold
        return Grade(value, f"{config.evaluation_metric} {value:.3f}", details=details)

    return PerItem(config.name or config.type, grade_one)
