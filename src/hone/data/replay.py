"""General-text replay against forgetting: shipped paragraphs of Python's docs as raw text examples.

They come from `hone/data/general/replay_text.jsonl` (see `hone.data.shipped`), written from topics
disjoint from the forgetting probe's, so replay never trains on what the probe measures.
"""

from __future__ import annotations

import random

from hone.data.formats import Example
from hone.data.shipped import load_general_text


def replay_examples(n_task: int, fraction: float, seed: int) -> list[Example]:
    """Enough replay examples that they make up `fraction` of task + replay (cycling the shipped text)."""
    if fraction <= 0:
        return []
    texts = load_general_text("replay_text.jsonl")
    count = round(n_task * fraction / (1 - fraction))
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    return [Example(format="text", text=texts[order[i % len(texts)]], where=f"replay:{order[i % len(texts)] + 1}")
            for i in range(count)]
