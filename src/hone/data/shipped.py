"""The general texts and questions hone ships (`hone/data/general/`, no network).

`general_text.jsonl`: 60 paragraphs of Python's documentation (PSF licence) whose perplexity the
forgetting suite measures; `replay_text.jsonl`: paragraphs from disjoint topics that `data.replay`
trains on; `questions.jsonl`: general questions whose answers code can check, in the parts below.
"""

from __future__ import annotations

import json
from importlib import resources

QUESTION_PARTS = ("arithmetic", "facts", "instructions")
PARTS = ("general_text", *QUESTION_PARTS)


def load_questions() -> list[dict]:
    text = resources.files("hone.data").joinpath("general/questions.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def load_general_text(name: str = "general_text.jsonl") -> list[str]:
    text = resources.files("hone.data").joinpath(f"general/{name}").read_text(encoding="utf-8")
    return [json.loads(line)["text"] for line in text.splitlines() if line.strip()]
