"""A teacher for distillation (`objectives.distill`): a hone model (shipped name, model directory or run
directory) loaded here, or any OpenAI-compatible endpoint asked over HTTP. Both answer conversations
with text; a hone model also gives its token distributions (on-policy distillation)."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from hone.data.read import Issue, iter_records
from hone.errors import ConfigError, DataError
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
                     temperature: float, api_key: str | None,
                     hint: str = "check objective.teacher (the base URL, ending in /v1) and objective.teacher_model"
                     ) -> list[str]:
    """The endpoint's reply to each conversation (`POST {base_url}/chat/completions`, one per conversation).
    The key is `api_key`, else $OPENAI_API_KEY, else none. A failed request is a ConfigError naming the
    endpoint, the HTTP status (if any) and the conversation."""
    import openai

    api_key = api_key or os.environ.get("OPENAI_API_KEY") or "unused"
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=2)
    answers = []
    for n, messages in enumerate(conversations):
        try:
            reply = client.chat.completions.create(model=model, messages=messages, max_tokens=max_new_tokens,
                                                   temperature=temperature)
        except openai.APIStatusError as exc:
            raise ConfigError(f"the teacher endpoint answered HTTP {exc.status_code} on prompt {n + 1}: "
                              f"{exc.message}", where=f"{base_url.rstrip('/')}/chat/completions", hint=hint) from None
        except openai.OpenAIError as exc:
            raise ConfigError(f"the teacher endpoint failed on prompt {n + 1}: {exc}", where=base_url,
                              hint=hint) from None
        answers.append((reply.choices[0].message.content or "").strip())
    return answers


def read_prompts(path: str | Path) -> list[tuple[int, list[dict]]]:
    """(line, messages) of every record of a prompts file: conversations ending with a user turn, earlier
    assistant turns kept as context. A bad line is a DataError naming file:line."""
    prompts, issues = [], []
    for line, record in iter_records(path):
        if isinstance(record, Issue):
            issues.append(record)
        elif record.format != "graded_prompt":
            last = (record.messages or [{}])[-1].get("role", "no message")
            issues.append(Issue(str(path), line, "messages", f"ends with {last!r}; a prompt is a conversation "
                                "ending with a user turn, for the teacher to answer"))
        else:
            prompts.append((line, [{k: v for k, v in m.items() if k != "weight" or m["role"] == "assistant"}
                                   for m in record.messages]))
    if issues or not prompts:
        raise DataError(f"{len(issues)} of {len(issues) + len(prompts)} prompts are invalid" if issues
                        else "the file has no prompts", where=str(path), issues=issues,
                        hint='write one {"messages": [..., {"role": "user", "content": ...}]} per line')
    return prompts


def write_teacher_file(prompts_path: str | Path, out: str | Path, *, base_url: str, model: str, max_new_tokens: int,
                       temperature: float, api_key: str | None, hint: str) -> tuple[int, int]:
    """Ask the endpoint to answer every prompt of `prompts_path` and write `out`: one chat training record per
    prompt (its messages and the teacher's reply) with its `provenance` (teacher, sampling, time, source
    line; never the key). A prompt the teacher answered with nothing is left out. Returns (records
    written, prompts asked)."""
    prompts = read_prompts(prompts_path)
    answers = endpoint_answers(base_url, model, [m for _, m in prompts], max_new_tokens=max_new_tokens,
                               temperature=temperature, api_key=api_key, hint=hint)
    sampled_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    kept = [(line, messages, answer) for (line, messages), answer in zip(prompts, answers) if answer]
    with open(out, "w", encoding="utf-8") as f:
        for line, messages, answer in kept:
            provenance = {"teacher_base_url": base_url, "teacher_model": model, "temperature": temperature,
                          "max_new_tokens": max_new_tokens, "sampled_at": sampled_at,
                          "source": f"{prompts_path}:{line}"}
            record = {"messages": [*messages, {"role": "assistant", "content": answer}], "provenance": provenance}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return len(kept), len(prompts)
