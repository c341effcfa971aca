"""Batched generation from chat messages with a base or tuned model (greedy or sampling).

hone owns its decoding loop (rather than `model.generate`) so it can reuse one KV cache for the
prefix that every prompt shares (a long system prompt or few-shot examples are prefilled once,
not once per prompt), and so serving can later batch requests the same way.

Conversations with images (a vision-language model) are the exception: each is prefilled with its
pixels and decoded from the KV cache by transformers' own `generate`, one at a time, because each
family places its image features and positions (Qwen's 3-D rotary positions) its own way.
"""

from __future__ import annotations

import copy
import inspect
from functools import lru_cache

import torch

from hone.data.formats import conversation_image_parts
from hone.data.images import FileResolver, ImageLimits, load_image
from hone.data.template import prompt_ids, render
from hone.data.vision import processor_for
from hone.data.record_errors import RecordError
from hone.errors import DataError, HoneError


@lru_cache(maxsize=1)
def cache_keyword() -> str:
    """The keyword transformers' forward takes the KV cache by: `cache` in the releases that renamed
    `past_key_values` (which then warns, and is going away), `past_key_values` in the older ones hone
    supports (5.17, on the lent GPU machines, among them)."""
    from transformers import LlamaModel

    return "cache" if "cache" in inspect.signature(LlamaModel.forward).parameters else "past_key_values"


MIN_SHARED_PREFIX = 16  # tokens; below this, prefilling the prefix separately is not worth it


@torch.no_grad()
def generate_batch(model, tokenizer, conversations: list[list[dict]], *, max_new_tokens: int = 256,
                   temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
                   batch_size: int = 16, progress=None, tools: list[list[dict] | None] | None = None) -> list[str]:
    """Complete each conversation's next assistant turn; prompts are rendered with the tokenizer's chat
    template (the artifact's, for a tuned model), with `tools[i]` offered to conversation i when given,
    and batched by length."""
    if any(conversation_image_parts(messages) for messages in conversations):
        return generate_with_images(model, tokenizer, conversations, max_new_tokens=max_new_tokens,
                                    temperature=temperature, top_p=top_p, seed=seed, progress=progress)
    offered = tools or [None] * len(conversations)
    encoded = [prompt_ids(messages, tokenizer, tools=listed) for messages, listed in zip(conversations, offered)]
    return generate_from_ids(model, tokenizer, encoded, max_new_tokens=max_new_tokens, temperature=temperature,
                             top_p=top_p, seed=seed, batch_size=batch_size, progress=progress)


def conversation_images(messages: list[dict], *, files: FileResolver | None = None, base_dir=None,
                        limits: ImageLimits = ImageLimits()) -> list:
    """A conversation's pictures, read and checked (`hone.data.images.load_image`); a bad one is a DataError
    naming the field, which the service answers with a 400."""
    try:
        return [load_image(p["url"], field=p["field"], base_dir=base_dir, files=files, limits=limits)
                for p in conversation_image_parts(messages)]
    except RecordError as error:
        raise DataError(error.message, where=error.field) from None


@torch.no_grad()
def generate_with_images(model, tokenizer, conversations: list[list[dict]], *, max_new_tokens: int = 256,
                         temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
                         files: FileResolver | None = None, base_dir=None, limits: ImageLimits = ImageLimits(),
                         progress=None) -> list[str]:
    """Complete each conversation (parsed messages whose user turns may hold images) with a
    vision-language model: the prompt rendered by the tokenizer's chat template, expanded with the
    pictures by the model's processor, then decoded greedily or by sampling. Image urls are read as in
    training data (`hone.data.images.load_image`: data: URLs, paths under `base_dir`, ids via `files`)."""
    processor = processor_for(tokenizer)
    if processor is None:
        raise HoneError("the conversation holds images, but the model has no vision tower", where="messages",
                        hint="use a vision-language model, or send text only")
    if seed is not None:
        torch.manual_seed(seed)
    model.eval()
    device = next(model.parameters()).device
    stop = sorted(stop_token_ids(model, tokenizer))
    outputs = []
    for messages in conversations:
        images = conversation_images(messages, files=files, base_dir=base_dir, limits=limits)
        text = render(messages, tokenizer, add_generation_prompt=True)
        inputs = processor(text=[text], images=[images] if images else None, add_special_tokens=False,
                           return_tensors="pt").to(device)
        sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else \
            dict(do_sample=False, temperature=None, top_p=None, top_k=None)
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, eos_token_id=stop,
                             pad_token_id=tokenizer.pad_token_id, **sampling)
        new = out[0, inputs["input_ids"].shape[1]:].tolist()
        outputs.append(tokenizer.decode(_until_stop(new, set(stop)), skip_special_tokens=True).strip())
        if progress is not None:
            progress(1)
    return outputs


def generate_from_ids(model, tokenizer, encoded: list[list[int]], *, max_new_tokens: int = 256,
                      temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
                      batch_size: int = 16, progress=None) -> list[str]:
    """Continue each token prompt (a rendered conversation, or plain text for a base model)."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    stop = stop_token_ids(model, tokenizer)
    model.eval()
    model, start_cache, virtual = decoding_start(model)
    prefix_len = shared_prefix_length(encoded)
    prefix_cache = prefill(model, encoded[0][:prefix_len], start_cache) if prefix_len else start_cache
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    outputs: list[str] = [""] * len(encoded)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        suffixes = [encoded[i][prefix_len:] for i in chunk]
        cache = expand_cache(prefix_cache, len(chunk)) if prefix_cache is not None else None
        tokens = decode(model, suffixes, virtual + prefix_len, cache, pad_id=tokenizer.pad_token_id, stop=stop,
                        max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, generator=generator)
        for i, ids in zip(chunk, tokens):
            outputs[i] = tokenizer.decode(ids, skip_special_tokens=True).strip()
        if progress is not None:
            progress(len(chunk))
    return outputs


def decode(model, prompts: list[list[int]], offset: int, cache, *, pad_id: int, stop: set[int],
           max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0, generator=None,
           pick=None, on_step=None) -> list[list[int]]:
    """Decode a batch of token prompts that continue a cached prefix of `offset` tokens (or none).

    Prompts are left-padded; the 2D attention mask hides padding and position ids skip it, so
    each row computes exactly what it would alone. Serving hooks in two ways: `pick(logits)`
    replaces the sampler (per-request temperatures and seeds), and `on_step(tokens)` sees each
    step's tokens and returns a bool mask of rows to stop (stop strings, per-row limits, streaming).
    """
    rows = decode_rows(model, prompts, offset, cache, pad_id=pad_id, stop=stop, max_new_tokens=max_new_tokens,
                       temperature=temperature, top_p=top_p, generator=generator, pick=pick, on_step=on_step)
    return [_until_stop(row, stop) for row in rows.tolist()]


def decode_rows(model, prompts: list[list[int]], offset: int, cache, *, pad_id: int, stop: set[int],
                max_new_tokens: int, temperature: float, top_p: float, generator=None, group_size: int = 1,
                pick=None, on_step=None) -> torch.Tensor:
    """The decoding loop: tokens (B * group_size, T).

    Each prompt is prefilled once; with `group_size` > 1 its cache, last logits and mask are then
    repeated so that `group_size` continuations of it decode together (GRPO's group). A row holds
    `pad_id` after its stop token; decoding ends as soon as every row has stopped.
    """
    from transformers import DynamicCache

    batch, width = len(prompts), max(len(p) for p in prompts)
    real = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts])
    mask = torch.cat([torch.ones(batch, offset, dtype=torch.long), real], dim=1)
    positions = (offset + real.cumsum(1) - 1).clamp(min=0)
    cache = cache if cache is not None else DynamicCache()
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, **{cache_keyword(): cache},
                use_cache=True, logits_to_keep=1)
    logits, next_position = out.logits[:, -1], positions[:, -1:] + 1
    if group_size > 1:
        cache.batch_repeat_interleave(group_size)
        logits, mask, next_position = (t.repeat_interleave(group_size, dim=0) for t in (logits, mask, next_position))
        batch *= group_size
    done = torch.zeros(batch, dtype=torch.bool)
    generated: list[torch.Tensor] = []
    stop_ids = torch.tensor(sorted(stop))
    for _ in range(max_new_tokens):
        logits = logits.float()
        token = pick(logits) if pick is not None else pick_next(logits, temperature, top_p, generator)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        generated.append(token)
        done |= torch.isin(token, stop_ids)
        if on_step is not None:
            done |= on_step(token)
        if bool(done.all()):
            break
        mask = torch.cat([mask, torch.ones(batch, 1, dtype=torch.long)], dim=1)
        out = model(input_ids=token[:, None], attention_mask=mask, position_ids=next_position,
                    **{cache_keyword(): cache}, use_cache=True)
        logits, next_position = out.logits[:, -1], next_position + 1
    return torch.stack(generated, dim=1) if generated else torch.zeros(batch, 0, dtype=torch.long)


@torch.no_grad()
def sample_groups(model, prompts: list[list[int]], group_size: int, *, pad_id: int, stop: set[int],
                  max_new_tokens: int, temperature: float, top_p: float = 1.0, generator=None):
    """`group_size` completions of each token prompt, all decoded as one batch; prompt p's are rows
    [p * group_size, (p + 1) * group_size). A prefix every prompt shares is prefilled once, then each
    prompt once. Returns the completions: token lists through the stop token when one was produced."""
    prefix_len = shared_prefix_length(prompts)
    cache = expand_cache(prefill(model, prompts[0][:prefix_len]), len(prompts)) if prefix_len else None
    rows = decode_rows(model, [p[prefix_len:] for p in prompts], prefix_len, cache, pad_id=pad_id, stop=stop,
                       max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, generator=generator,
                       group_size=group_size)
    return [_through_stop(row, stop) for row in rows.tolist()]


def pick_next(logits: torch.Tensor, temperature: float, top_p: float, generator=None) -> torch.Tensor:
    """Greedy when temperature is 0; otherwise sample from the temperature-scaled nucleus (top_p)."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, sorted_ids = probs.sort(dim=-1, descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs > top_p  # keep the smallest set reaching top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, sorted_ids, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def shared_prefix_length(prompts: list[list[int]]) -> int:
    """Tokens every prompt starts with (leaving each at least one token), or 0 if too few to matter."""
    if len(prompts) < 2:
        return 0
    limit = min(len(p) for p in prompts) - 1
    first = prompts[0]
    n = 0
    while n < limit and all(p[n] == first[n] for p in prompts):
        n += 1
    return n if n >= MIN_SHARED_PREFIX else 0


def decoding_start(model):
    """(model to run, cache to start from, its length): a tuned model with virtual tokens (prompt or
    prefix tuning) starts from their cache and decodes with its plain base; others start empty."""
    custom = getattr(model, "hone_decoding_start", None)
    return custom() if custom is not None else (model, None, 0)


def prefill(model, ids: list[int], cache=None):
    """The KV cache of one token prefix (appended to `cache` when given)."""
    from transformers import DynamicCache

    cache = cache if cache is not None else DynamicCache()
    model(input_ids=torch.tensor([ids]), **{cache_keyword(): cache}, use_cache=True, logits_to_keep=1)
    return cache


def stop_token_ids(model, tokenizer) -> set[int]:
    stop = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    stop |= set(configured if isinstance(configured, list) else [configured])
    return {t for t in stop if t is not None}


def expand_cache(cache, batch: int):
    """A copy of a batch-1 cache repeated for `batch` rows."""
    cache = copy.deepcopy(cache)
    cache.batch_repeat_interleave(batch)
    return cache


def _through_stop(row: list[int], stop: set[int]) -> list[int]:
    for n, token in enumerate(row):
        if token in stop:
            return row[:n + 1]
    return row


def _until_stop(row: list[int], stop: set[int]) -> list[int]:
    for n, token in enumerate(row):
        if token in stop:
            return row[:n]
    return row
