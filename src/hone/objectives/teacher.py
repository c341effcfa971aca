"""A teacher for distillation (`objectives.distill`): a hone model (shipped name, model directory or run
directory) loaded here, or any OpenAI-compatible endpoint asked over HTTP. Both answer conversations
with text; a hone model also gives its token distributions (on-policy distillation)."""

from __future__ import annotations

from pathlib import Path

from hone.errors import ConfigError
from hone.methods.tuned import load_tuned
from hone.models.artifact import MANIFEST, adapter_dir, read_manifest
from hone.models.generate import generate_batch
from hone.models.load import load_model, load_tokenizer


def is_run(spec: str) -> bool:
    return (Path(spec) / "adapter" / MANIFEST).is_file() or (Path(spec) / MANIFEST).is_file()


def load_teacher(spec: str):
    """(model, tokenizer) of a hone run (its base with its tuning) or of a plain model, frozen, in eval mode."""
    model, tokenizer = load_tuned(spec)[:2] if is_run(spec) else load_model(spec)[:2]
    model.requires_grad_(False)
    return model.eval(), tokenizer


def teacher_tokenizer(spec: str):
    """The teacher's tokenizer without loading its weights (a run's: its base's)."""
    if is_run(spec):
        return load_tokenizer(read_manifest(adapter_dir(spec))["base_model"]["id"])
    return load_tokenizer(spec)


def model_answers(spec: str, conversations: list[list[dict]], *, max_new_tokens: int,
                  temperature: float, seed: int = 0) -> list[str]:
    """The teacher's reply to each conversation, generated here."""
    model, tokenizer = load_teacher(spec)
    return generate_batch(model, tokenizer, conversations, max_new_tokens=max_new_tokens, temperature=temperature,
                          seed=seed)


def endpoint_answers(base_url: str, model: str, conversations: list[list[dict]], *, max_new_tokens: int,
                     temperature: float, api_key: str | None) -> list[str]:
    """The endpoint's reply to each conversation (`POST {base_url}/chat/completions`, one per conversation).
    A failed request is a ConfigError naming the endpoint and the conversation."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key=api_key or "unused", max_retries=2)
    answers = []
    for n, messages in enumerate(conversations):
        try:
            reply = client.chat.completions.create(model=model, messages=messages, max_tokens=max_new_tokens,
                                                   temperature=temperature)
        except openai.OpenAIError as exc:
            raise ConfigError(f"the teacher endpoint failed on prompt {n + 1}: {exc}", where=base_url,
                              hint="check objective.teacher (the base URL, ending in /v1) and objective.teacher_model"
                              ) from None
        answers.append((reply.choices[0].message.content or "").strip())
    return answers
