"""POST /v1/chat/completions and POST /v1/completions."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from hone.data.formats import conversation_image_parts
from hone.data.template import prompt_ids, text_prompt_ids
from hone.serve import protocol
from hone.serve.images import image_prompt, openai_messages, with_image_parts
from hone.serve.state import state_of
from hone.serve.generation import prepare, respond

router = APIRouter()


@router.post("/v1/chat/completions")
async def chat_completions(body: protocol.ChatCompletionRequest, request: Request):
    state = state_of(request)
    state.authorize(request, body.model)
    engine, adapter = await state.resolve(body.model)
    messages = with_image_parts(body.messages, body.plain_messages())
    tools = body.offered_tools()
    pixels = None
    if conversation_image_parts(messages):
        ids, pixels = await asyncio.to_thread(image_prompt, engine, adapter, body.model, messages,
                                              limits=state.image_limits(), tools=tools, files=state.files_for(request))
    else:
        ids = prompt_ids(messages, engine.tokenizer, chat_template=engine.chat_template(adapter), tools=tools)
    ex = prepare(state, request, body, "chat", [ids], engine, adapter)
    ex.tools = tools
    ex.pixels = pixels
    return await respond(state, request, ex, openai_messages(messages) if pixels else messages, None)


@router.post("/v1/completions")
async def completions(body: protocol.CompletionRequest, request: Request):
    state = state_of(request)
    state.authorize(request, body.model)
    engine, adapter = await state.resolve(body.model)
    texts = body.prompts()
    ids = [text_prompt_ids(text, engine.tokenizer) for text in texts]
    ex = prepare(state, request, body, "completion", ids, engine, adapter)
    return await respond(state, request, ex, None, texts)
