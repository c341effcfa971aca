"""`ServeSettings`: everything `hone serve` can be told, validated once (CLI flags map onto it)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from hone.config.base import Section
from hone.models.registry import DEFAULT_MODEL
from hone.paths import hone_home


class ServeSettings(Section):
    model: str = DEFAULT_MODEL
    """The base model every adapter runs on (a shipped name, a model directory, .gguf or hub id)."""
    adapters: dict[str, str] = {}
    """name → adapter artifact (a run directory or its adapter/ folder), registered at start."""
    adapters_dir: str | None = None
    """Register every adapter found in this folder (one subfolder per adapter, named after it)."""
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_keys: list[str] = []
    """Plain keys with full access (models and admin), e.g. from --api-key; kept only as hashes."""
    keys_file: str | None = None
    """Hashed, model-scoped keys (`hone keys create`); default HONE_HOME/keys.json. With no key
    anywhere the server is open, and admin endpoints are refused."""
    max_prompt_tokens: int = Field(2048, gt=0)
    """A prompt longer than this (in tokens) is refused with 400 context_length_exceeded."""
    max_tokens: int = Field(1024, gt=0)
    """The largest max_tokens a request may ask for."""
    default_max_tokens: int = Field(256, gt=0)
    """max_tokens when a request gives none."""
    max_n: int = Field(8, gt=0)
    """The most choices (n) one request may ask for."""
    max_body_bytes: int = Field(1 << 20, gt=0)
    """Request bodies larger than this are refused with 413."""
    max_batch_rows: int = Field(16, gt=0)
    """Rows (choices) decoded together in one batch."""
    batch_wait_ms: float = Field(5.0, ge=0)
    """After the first waiting request, how long to wait for others to share its batch."""
    max_bases: int = Field(2, gt=0)
    """Base models in memory at once, the served one included: a fine-tuned model from another base
    loads that base on demand, evicting the least recently used other base (each is a whole model)."""
    max_loaded_adapters: int = Field(16, gt=0)
    """Adapters kept in memory at once (least recently used are evicted)."""
    max_adapter_bytes: int = Field(1 << 30, gt=0)
    """Memory the loaded adapters' weights may take together."""
    request_log: str | None = None
    """Where the JSON request log goes: a file path, '-' for stderr, or None for no log."""
    log_content: bool = False
    """Also log prompts and outputs in the request log (off by default: they may be private)."""
    metrics_models: Literal["admin", "public", "never"] = Field("admin", description=(
        "Who sees per-model series (model names, a project's fine-tuned models among them) in /metrics: "
        "'admin' a request with an admin API key, 'public' anyone, 'never' nobody; others see counts "
        "for the base and for adapters together."))
    feedback_file: str | None = None
    """Feedback JSONL (POST /v1/feedback); default HONE_HOME/feedback.jsonl."""
    feedback_window: int = Field(10_000, gt=0)
    """How many recent responses are kept in memory so feedback can name them by id."""
    max_images: int = Field(10, gt=0, description=(
        "The most images one chat request may hold (image_url content parts, for a vision-language base)."))
    max_image_bytes: int = Field(10 * 1024 * 1024, gt=0, description=(
        "The largest image (encoded bytes) a chat request may send; a larger one is a 400 naming its part."))
    threads: int | None = Field(None, gt=0)
    """CPU threads for torch (default: the cores available to this process)."""

    def keys_path(self) -> Path:
        return Path(self.keys_file) if self.keys_file else hone_home() / "keys.json"

    def feedback_path(self) -> Path:
        return Path(self.feedback_file) if self.feedback_file else hone_home() / "feedback.jsonl"
