"""The `data` section of a run config: which files, how they are split, truncated and packed."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hone.config.base import Section


class DataConfig(Section):
    """Where the examples come from and how they become token rows."""
    train: str | None = None
    """Training JSONL: chat `messages`, `prompt`/`completion`, alpaca or raw `text` records (sft);
    preference pairs (dpo, orpo, simpo, reward; kto takes them too); judged completions `{"prompt",
    "completion", "label": true|false}` (kto); labelled `{"text", "label"}` records (classify); prompts (grpo:
    conversations ending with a user turn plus grader fields, or chat records)."""
    validation: str | None = None
    """Validation JSONL; when absent, `validation_fraction` of `train` is held out deterministically."""
    validation_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    """Share of `train` held out for validation when `validation` is not set (deterministic per example)."""
    max_length: int = Field(512, gt=1)
    """Examples longer than this many tokens are truncated (and counted in the data report)."""
    loss_on: Literal["assistant", "all"] = "assistant"
    """Which chat tokens carry loss; raw `text` records always train on every token."""
    chat_template: str | None = Field(None, description=(
        "The chat template to train (and later serve) with: a family name (chatml, llama3, qwen2.5, qwen3, "
        "gemma2, gemma3, mistral, phi3, smollm3, gpt-oss) or the path of a Jinja file; unset, the model's own. "
        "A base model without a template needs one for chat data. The artifact records it, so `hone serve`, "
        "`generate` and `eval` render prompts the same way."))
    reasoning: Literal["train", "drop"] = Field("train", description=(
        "Assistant reasoning (`reasoning_content` or `thinking` on a message): `train` renders it with the "
        "template and trains it, and fixes a template's enable_thinking switch on; `drop` leaves it out and "
        "fixes the switch off. The artifact's template keeps the switch, so serving thinks as training did."))
    max_images: int = Field(10, ge=1, description=(
        "The most images one example may hold (OpenAI `image_url` content parts); `hone data check` and "
        "training refuse an example with more."))
    image_files: str | None = Field(None, description=(
        "A folder of uploaded images named by file id (`file-abc123.png`): image urls that are uploaded file "
        "ids read from it. The service's jobs set it; elsewhere give images as data: URLs or paths."))
    packing: bool = True
    """Pack several examples per row (no attention across examples, positions restart)."""
    strict: bool = True
    """Refuse a file with any invalid line (True) or skip invalid lines and say how many (False)."""
    replay: float = Field(0.0, ge=0.0, lt=1.0)
    """Fraction of the training examples that are general text replayed against forgetting (shipped
    paragraphs of Python's docs, disjoint from the forgetting probe); 0.2 adds 1 replay per 4 task examples."""
