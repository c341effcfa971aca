"""Serving logic shared by chat and text completions: limits, jobs for the engine, replies and streams.

A request becomes one engine `Job` per prompt (each with `n` choices). The worker thread reports
tokens through `emit`, which hands them to this request's asyncio queue; a non-streaming reply
waits for every choice to finish, a streaming one forwards each piece as an SSE chunk.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from hone.data.tools import parse_tool_calls
from hone.errors import HoneError
from hone.infer.engine import Job
from hone.serve import protocol
from hone.serve.errors import ApiError, from_exception


class PromptTooLong(HoneError):
    code = "context_length_exceeded"


@dataclass
class Exchange:
    """One request on its way through the server (what the log, metrics and feedback need)."""

    kind: str  # chat | completion
    id: str
    model: str
    adapter: str | None
    prompts: list[list[int]]
    body: protocol._Request
    route: str = ""
    engine: object = None  # the engine of the model's base, which runs the request
    project: str | None = None  # the project of the request's key (`hone service`); feedback stays in it
    tools: list[dict] | None = None  # a chat request's offered tools: its replies are read for calls
    pixels: dict | None = None  # a chat request with images: the processor's pixel inputs for its prompt
    started: float = field(default_factory=time.monotonic)
    first_token: float | None = None
    texts: dict[int, str] = field(default_factory=dict)
    finish: dict[int, str] = field(default_factory=dict)
    tokens: dict[int, int] = field(default_factory=dict)


def prepare(state, request: Request, body: protocol._Request, kind: str, prompts: list[list[int]], engine,
            adapter: str | None) -> Exchange:
    """Check the request against the limits and build its Exchange (for `adapter` on `engine`)."""
    settings = state.settings
    if body.n > settings.max_n:
        raise ApiError(400, f"n is {body.n}; this server allows at most {settings.max_n}", param="n",
                       code="invalid_value")
    if len(prompts) * body.n > settings.max_batch_rows:
        raise ApiError(400, f"{len(prompts)} prompts x n={body.n} is more than the {settings.max_batch_rows} "
                       "choices one request may ask for", param="n", code="invalid_value")
    max_tokens = body.requested_max_tokens()
    if max_tokens is not None and max_tokens > settings.max_tokens:
        raise ApiError(400, f"max_tokens is {max_tokens}; this server allows at most {settings.max_tokens}",
                       param="max_tokens", code="invalid_value")
    limit = getattr(engine.base.config, "max_position_embeddings", None)
    for ids in prompts:
        if len(ids) > settings.max_prompt_tokens:
            raise PromptTooLong(f"the prompt has {len(ids)} tokens; this server allows at most "
                                f"{settings.max_prompt_tokens}", where="messages" if kind == "chat" else "prompt",
                                hint="shorten the prompt")
        if limit and len(ids) + (max_tokens or default_max_tokens(settings)) > limit:
            raise PromptTooLong(f"the prompt ({len(ids)} tokens) plus max_tokens exceeds the model's context of "
                                f"{limit} tokens", where="max_tokens", hint="shorten the prompt or lower max_tokens")
        if not ids:
            raise ApiError(400, "the prompt is empty", param="prompt", code="invalid_value")
    rid = protocol.new_id("chatcmpl" if kind == "chat" else "cmpl")
    return Exchange(kind, rid, body.model, adapter, prompts, body, route=request.url.path, engine=engine,
                    project=request.state.project)


def default_max_tokens(settings) -> int:
    return min(settings.default_max_tokens, settings.max_tokens)


async def respond(state, request: Request, ex: Exchange, messages: list[dict] | None, texts: list[str] | None):
    """Submit the jobs and answer: one JSON body, or an SSE stream."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    body = ex.body
    max_tokens = body.requested_max_tokens() or default_max_tokens(state.settings)
    jobs = []
    for p, ids in enumerate(ex.prompts):
        def emit(event, p=p):
            loop.call_soon_threadsafe(events.put_nowait, (p, event))

        jobs.append(Job(ids, adapter=ex.adapter, n=body.n, max_tokens=max_tokens, temperature=body.temperature,
                        top_p=body.top_p, seed=body.seed, stop=body.stop_strings(), emit=emit,
                        ignore_eos=body.ignore_eos, pixels=ex.pixels))
    for job in jobs:
        ex.engine.submit(job)
    state.metrics.on_request(ex.model, ex.adapter)
    state.metrics.prompt_tokens.inc(sum(len(p) for p in ex.prompts) * body.n)
    request.state.exchange = ex
    remember = lambda: state.remember(ex, messages, texts)  # noqa: E731
    if body.stream:
        return StreamingResponse(_stream(state, request, ex, events, jobs, remember), media_type="text/event-stream")
    total = len(jobs) * body.n
    try:
        while len(ex.finish) < total:
            p, event = await events.get()
            _record(state, ex, p, event)
    finally:
        for job in jobs:  # a client that went away (or an error) stops the other rows at the next step
            job.cancelled = len(ex.finish) < total
    remember()
    return JSONResponse(_final(ex))


def _record(state, ex: Exchange, p: int, event: dict) -> tuple[int, str] | None:
    """Apply one engine event to the exchange; returns (choice index, text) for a token."""
    if event["type"] == "error":
        raise from_exception(event["error"])
    index = p * ex.body.n + event["index"]
    if event["type"] == "token":
        if ex.first_token is None:
            ex.first_token = time.monotonic()
            state.metrics.ttft.labels(ex.route).observe(ex.first_token - ex.started)
        ex.texts[index] = ex.texts.get(index, "") + event["text"]
        return index, event["text"]
    ex.finish[index] = "stop" if event["reason"] == "cancelled" else event["reason"]
    ex.tokens[index] = event["tokens"]
    return None


def _usage(ex: Exchange) -> dict:
    return protocol.usage(sum(len(p) for p in ex.prompts) * ex.body.n, sum(ex.tokens.values()))


def _final(ex: Exchange) -> dict:
    created = protocol.now()
    choices = [_choice(ex, i) for i in sorted(ex.finish)]
    build = protocol.chat_response if ex.kind == "chat" else protocol.completion_response
    return build(ex.id, ex.model, created, choices, _usage(ex))


def _choice(ex: Exchange, index: int) -> dict:
    """One finished choice; with tools offered, its `<tool_call>` lines parsed into `tool_calls`
    (finish_reason `tool_calls`; only the first call when parallel_tool_calls is false)."""
    text = ex.texts.get(index, "")
    if not ex.tools:
        return {"index": index, "text": text, "finish_reason": ex.finish[index]}
    content, calls = parse_tool_calls(text, {tool["function"]["name"] for tool in ex.tools})
    if not calls:
        return {"index": index, "text": text, "finish_reason": ex.finish[index]}
    if ex.body.parallel_tool_calls is False:
        calls = calls[:1]
    return {"index": index, "text": content, "finish_reason": "tool_calls", "tool_calls": calls}


async def _stream(state, request: Request, ex: Exchange, events: asyncio.Queue, jobs: list[Job], remember):
    created = protocol.now()
    total = len(jobs) * ex.body.n
    chat = ex.kind == "chat"
    try:
        if chat:
            for i in range(total):
                yield _sse(protocol.chat_chunk(ex.id, ex.model, created, i, role=True, text=""))
        while len(ex.finish) < total:
            p, event = await events.get()
            try:
                piece = _record(state, ex, p, event)
            except ApiError as error:
                yield _sse(error.body())
                return
            if piece is not None:
                if ex.tools:  # a reply that may hold calls is sent whole when it finishes
                    continue
                index, text = piece
                chunk = (protocol.chat_chunk(ex.id, ex.model, created, index, text=text) if chat
                         else protocol.completion_chunk(ex.id, ex.model, created, index, text=text))
            elif ex.tools:
                index = p * ex.body.n + event["index"]
                choice = _choice(ex, index)
                if choice["text"]:
                    yield _sse(protocol.chat_chunk(ex.id, ex.model, created, index, text=choice["text"]))
                chunk = protocol.chat_chunk(ex.id, ex.model, created, index, finish_reason=choice["finish_reason"],
                                            tool_calls=choice.get("tool_calls"))
            else:
                index = p * ex.body.n + event["index"]
                chunk = (protocol.chat_chunk(ex.id, ex.model, created, index, finish_reason=ex.finish[index]) if chat
                         else protocol.completion_chunk(ex.id, ex.model, created, index,
                                                        finish_reason=ex.finish[index]))
            yield _sse(chunk)
        if ex.body.stream_options is not None and ex.body.stream_options.include_usage:
            obj = "chat.completion.chunk" if chat else "text_completion"
            yield _sse(protocol.usage_chunk(ex.id, ex.model, created, obj, _usage(ex)))
        yield "data: [DONE]\n\n"
        remember()
    finally:
        for job in jobs:  # a client that went away stops its rows at the next step
            job.cancelled = len(ex.finish) < total
        state.metrics.latency.labels(ex.route).observe(time.monotonic() - ex.started)
        state.log_exchange(request, ex, status=200)


def _sse(payload: dict) -> str:
    return f"data: {json.dumps(payload)}\n\n"
