"""Images in chat requests: OpenAI's `image_url` content parts parsed, read and checked, then expanded
by the model's own processor into the prompt's token ids (image tokens included) and its pixel inputs.

Only a vision-language base reads images; a text-only one answers 400 naming the model. A bad image
(corrupt, oversized, an unsupported format, a web URL, a path on the server, one too many) is a 400
whose `param` is the content part that holds it (`messages[0].content[1]`), never a 500.
"""

from __future__ import annotations

import re

from hone.data.formats import content_parts, conversation_image_parts
from hone.data.images import FileResolver, ImageLimits, load_image
from hone.data.record_errors import RecordError
from hone.data.template import render
from hone.data.vision import processor_for
from hone.errors import HoneError
from hone.jobs.images import is_path
from hone.serve.errors import ApiError

PART = re.compile(r"messages\[\d+\]\.content\[\d+\]")
TEXT_KEYS = ("input_ids", "attention_mask")  # the processor's outputs that are not pixel inputs


def part_param(field: str) -> str:
    """The content part a field lies in (`messages[0].content[1].image_url.url` -> `messages[0].content[1]`)."""
    match = PART.match(field)
    return match.group(0) if match else field


def bad_part(error: RecordError) -> ApiError:
    return ApiError(400, str(error), param=part_param(error.field), code="invalid_image")


def with_image_parts(raw_messages: list, messages: list[dict]) -> list[dict]:
    """`messages` (hone's message dicts of a chat request) with `parts` and `images` on every message
    whose content holds `image_url` parts, as training records carry them (`hone.data.formats`)."""
    for i, (raw, message) in enumerate(zip(raw_messages, messages)):
        if not isinstance(raw.content, list):
            continue
        try:
            _, parts = content_parts(raw.content, f"messages[{i}].content")
        except RecordError as error:
            raise bad_part(error) from None
        images = [part for part in parts if part["type"] == "image"]
        if not images:
            continue
        if message["role"] not in ("user", "system"):
            raise ApiError(400, f"messages[{i}] ({raw.role}) holds an image; only user and system "
                           "messages may hold images", param=part_param(images[0]["field"]), code="invalid_image")
        message["parts"] = parts
        message["images"] = [part["url"] for part in images]
    return messages


def openai_messages(messages: list[dict]) -> list[dict]:
    """Messages with images back in OpenAI's shape (content parts), as feedback keeps them for training."""
    return [{**{k: v for k, v in m.items() if k not in ("parts", "images")},
             "content": [{"type": "text", "text": p["text"]} if p["type"] == "text" else
                         {"type": "image_url", "image_url": {"url": p["url"]}} for p in m["parts"]]}
            if "parts" in m else m for m in messages]


def image_prompt(engine, adapter: str | None, model: str, messages: list[dict], *, limits: ImageLimits,
                 tools: list[dict] | None = None, files: FileResolver | None = None) -> tuple[list[int], dict]:
    """(prompt ids with the image tokens, pixel inputs) of a conversation with images, for `adapter` on
    `engine` (rendered with the adapter's recorded chat template)."""
    parts = conversation_image_parts(messages)
    processor = processor_for(engine.tokenizer)
    if processor is None:
        raise ApiError(400, f"model {model} has no vision tower, so it cannot read images (its base "
                       f"{engine.source.id} is a text-only model); send text only, or call a vision-language model",
                       param=part_param(parts[0]["field"]), code="model_not_vision")
    if len(parts) > limits.max_images:
        raise ApiError(400, f"the request holds {len(parts)} images; this server reads at most {limits.max_images} "
                       "per request", param=part_param(parts[limits.max_images]["field"]), code="too_many_images")
    local = next((part for part in parts if is_path(part["url"])), None)
    if local is not None:
        raise ApiError(400, f"{local['field']}: is a path ({local['url'][:60]}); the server reads no files of its "
                       "machine for a request: send the image as a data:image/...;base64 URL"
                       + (" or the id of an image uploaded with purpose=vision" if files is not None else ""),
                       param=part_param(local["field"]), code="invalid_image")
    try:
        images = [load_image(part["url"], field=part["field"], files=files, limits=limits) for part in parts]
    except RecordError as error:
        raise bad_part(error) from None
    text = render(messages, engine.tokenizer, add_generation_prompt=True, chat_template=engine.chat_template(adapter),
                  tools=tools, where="messages")
    try:
        out = processor(text=[text], images=[images], add_special_tokens=False, return_tensors="pt")
    except (ValueError, TypeError, IndexError) as error:  # e.g. a template that places no image placeholder
        raise HoneError(f"the model's processor cannot read this conversation's images: {error}", where="messages",
                        hint="check that the model's chat template renders image parts") from None
    ids = [int(token) for token in out["input_ids"][0]]
    return ids, {key: value for key, value in out.items() if key not in TEXT_KEYS}
