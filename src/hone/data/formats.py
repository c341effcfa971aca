"""Training record formats, detected per JSONL record: chat, prompt/completion, alpaca, text
(supervised), preference (chosen/rejected pairs), judged completions (one reply marked good or bad,
for KTO), graded prompts (RL against a grader) and labelled text (classification).

Every format except `text` and `labelled` becomes a list of chat messages, so templating and loss
masking have a single path. Detection is by keys: a record holding a preference key
(`chosen`/`rejected`, `preferred_output`/`non_preferred_output`) is a preference record, one
holding `label` is a labelled record, whatever else it holds (their `prompt`/`messages`/`input`/
`text` keys belong to them) unless it also holds `completion`, which makes it a judged completion;
a record whose `messages` end with a user turn is a graded prompt
(OpenAI's reinforcement fine-tuning shape: every other key is data for the grader); otherwise a record claims a format when it holds any of that format's
keys, and claiming none or two is an error that lists the shapes hone accepts.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from hone.data.record_errors import RecordError, a_json_type
from hone.data.tools import check_tool_turns, parse_tool_calls_field, parse_tools

ROLES = ("system", "user", "assistant", "tool")
MESSAGE_KEYS = ("role", "content", "name", "weight", "tool_calls", "tool_call_id", "reasoning_content", "thinking")
REASONING_KEYS = ("reasoning_content", "thinking")  # an assistant's reasoning: OpenAI-style, Qwen-style

# format name -> the keys that make a record claim it, and the shape shown in error messages.
FORMAT_KEYS = {
    "chat": ("messages",),
    "prompt_completion": ("prompt", "completion"),
    "alpaca": ("instruction", "input", "output"),
    "text": ("text",),
}
# Formats whose keys take the whole record (checked first, in this order).
DOMINANT_KEYS = {
    "preference": ("chosen", "rejected", "preferred_output", "non_preferred_output"),
    "labelled": ("label",),
}
FORMAT_SHAPES = {
    "chat": '{"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]} (optionally '
            'with "tools", assistant "tool_calls", "tool" messages and "parallel_tool_calls")',
    "prompt_completion": '{"prompt": ..., "completion": ...}',
    "alpaca": '{"instruction": ..., "input": ... (optional), "output": ...}',
    "text": '{"text": ...}',
    "preference": '{"prompt": ... | "messages": [...], "chosen": ..., "rejected": ...} or OpenAI\'s '
                  '{"input": {"messages": [...]}, "preferred_output": [...], "non_preferred_output": [...]}',
    "labelled": '{"text": ..., "label": ...}',
    "judged": '{"prompt": ... | "messages": [...], "completion": ..., "label": true | false}',
    "graded_prompt": '{"messages": [..., {"role": "user", "content": ...}], ...fields a grader reads as '
                     '{{item.<field>}}}',
}


@dataclass
class Example:
    """One training record: chat `messages` (role, content, weight) or raw `text`, and where it came from.

    A preference record has the prompt in `messages` (ending with a user turn; earlier assistant
    turns weight 0) and the two replies as assistant messages in `chosen` and `rejected`; a labelled
    record has `text` and `label`.
    """

    format: str
    messages: list[dict] | None = None
    text: str | None = None
    where: str = ""
    chosen: list[dict] | None = None
    rejected: list[dict] | None = None
    tools: list[dict] | None = None  # a chat record's function tools, OpenAI's `tools` shape
    label: str | None = None
    item: dict | None = None  # a graded prompt's other fields, for the grader
    completion: list[dict] | None = None  # a judged completion's reply (assistant messages)
    desirable: bool | None = None  # a judged completion's verdict

    @property
    def images(self) -> list[str]:
        """The url of every image in the example's messages, in order (empty for a text-only example)."""
        return [url for m in self.messages or [] for url in m.get("images", [])]


def parse_record(obj: dict) -> Example:
    """Detect the format of one decoded JSON object and turn it into an `Example` (without `where`)."""
    if not isinstance(obj, dict):
        raise RecordError("", f"is {a_json_type(obj)}; expected a JSON object")
    if any(key in obj for key in DOMINANT_KEYS["preference"]):
        return parse_preference(obj)
    if "label" in obj and "completion" in obj:
        return parse_judged(obj)
    if ends_with_user_turn(obj.get("messages")):
        return parse_graded_prompt(obj)
    for name, keys in DOMINANT_KEYS.items():
        if any(key in obj for key in keys):
            return PARSERS[name](obj)
    claimed = [name for name, keys in FORMAT_KEYS.items() if any(key in obj for key in keys)]
    if len(claimed) != 1:
        shapes = "; ".join(f"{name} {shape}" for name, shape in FORMAT_SHAPES.items())
        if claimed:
            found = ", ".join(sorted(k for name in claimed for k in FORMAT_KEYS[name] if k in obj))
            raise RecordError("", f"keys {found} mix formats {' and '.join(claimed)}; use one of: {shapes}")
        keys = ", ".join(sorted(obj)) or "none"
        raise RecordError("", f"unknown format (keys: {keys}); expected one of: {shapes}")
    return PARSERS[claimed[0]](obj)


def parse_chat(obj: dict) -> Example:
    """The OpenAI fine-tuning chat format: `{"messages": [{"role", "content", "weight"?, "name"?}, ...]}`,
    with function calling: `tools`, assistant `tool_calls`, `tool` messages and `parallel_tool_calls`."""
    messages = obj["messages"]
    if not isinstance(messages, list):
        raise RecordError("messages", f"is {a_json_type(messages)}; expected an array of messages")
    if not messages:
        raise RecordError("messages", "is empty; expected at least a user and an assistant message")
    if "functions" in obj:
        raise RecordError("functions", "is the legacy function-calling format; give the functions as tools "
                          '([{"type": "function", "function": {...}}]) and the calls as tool_calls')
    tools = parse_tools(obj["tools"]) if obj.get("tools") is not None else None
    parallel = obj.get("parallel_tool_calls", True)
    if not isinstance(parallel, bool):
        raise RecordError("parallel_tool_calls", f"is {a_json_type(parallel)}; expected true or false")
    parsed = [parse_message(message, f"messages[{i}]", tools=True) for i, message in enumerate(messages)]
    check_conversation(parsed)
    check_tool_turns(parsed, tools or [], parallel)
    return Example(format="chat", messages=parsed, tools=tools)


def parse_message(message: object, field: str, *, tools: bool = False) -> dict:
    """Validate one chat message and return it as `{"role", "content", "weight"}` (content joined to text),
    plus `tool_calls` (assistant) or `tool_call_id` (tool) when `tools` allows function calling."""
    if not isinstance(message, dict):
        raise RecordError(field, f"is {a_json_type(message)}; expected an object with role and content")
    roles = ROLES if tools else ROLES[:3]
    expected = "|".join(roles)
    for key in message:
        if key not in MESSAGE_KEYS or (not tools and key.startswith("tool")):
            allowed = [k for k in MESSAGE_KEYS if tools or not k.startswith("tool")]
            raise RecordError(f"{field}.{key}", f"unexpected key; allowed: {', '.join(allowed)}")
    if "role" not in message:
        raise RecordError(f"{field}.role", f"is missing; expected {expected}")
    role = message["role"]
    if not isinstance(role, str):
        raise RecordError(f"{field}.role", f"is {a_json_type(role)}; expected {expected}")
    if role not in roles:
        raise RecordError(f"{field}.role", f"is {role!r}; expected {expected}")
    calls = None
    if "tool_calls" in message and message["tool_calls"] is not None:
        if role != "assistant":
            raise RecordError(f"{field}.tool_calls", f"is set on a {role} message; only assistant messages call tools")
        calls = parse_tool_calls_field(message["tool_calls"], f"{field}.tool_calls")
    if "tool_call_id" in message and role != "tool":
        raise RecordError(f"{field}.tool_call_id", f"is set on a {role} message; only tool messages answer calls")
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        found = a_json_type(message["tool_call_id"]) if "tool_call_id" in message else "missing"
        raise RecordError(f"{field}.tool_call_id", f"is {found}; a tool message gives the id of the call it answers")
    parts = []
    if "content" not in message or (calls and message["content"] is None):
        if not calls:
            raise RecordError(f"{field}.content", "is missing")
        content = ""
    else:
        content, parts = content_parts(message["content"], f"{field}.content")
    images = [part for part in parts if part["type"] == "image"]
    if images and role not in ("user", "system"):
        raise RecordError(images[0]["field"], f"is an image on a {role} message; only user and system messages "
                          "may hold images")
    if role != "system" and not calls and not content.strip() and not images:
        raise RecordError(f"{field}.content", f"is empty; {role} messages need text")
    if "name" in message and not isinstance(message["name"], str):
        raise RecordError(f"{field}.name", f"is {a_json_type(message['name'])}; expected a string")
    weight = 1
    if "weight" in message:
        weight = message["weight"]
        if role != "assistant":
            raise RecordError(f"{field}.weight", f"is set on a {role} message; only assistant messages take a weight")
        if type(weight) is not int or weight not in (0, 1):
            raise RecordError(f"{field}.weight", f"is {json.dumps(weight)}; expected 0 or 1")
    parsed = {"role": role, "content": content, "weight": weight}
    if images:
        parsed["images"] = [part["url"] for part in images]
        parsed["parts"] = parts
    if calls:
        parsed["tool_calls"] = calls
    if role == "tool":
        parsed["tool_call_id"] = message["tool_call_id"]
    reasoning = message_reasoning(message, role, field)
    if reasoning:
        parsed["reasoning"] = reasoning
    return parsed


def message_reasoning(message: dict, role: str, field: str) -> str | None:
    """An assistant message's reasoning, from `reasoning_content` or `thinking` (not both)."""
    given = [key for key in REASONING_KEYS if message.get(key) is not None]
    if not given:
        return None
    if role != "assistant":
        raise RecordError(f"{field}.{given[0]}", f"is set on a {role} message; only assistant messages carry reasoning")
    if len(given) > 1:
        raise RecordError(f"{field}.thinking", "is given beside reasoning_content; give the reasoning once")
    value = message[given[0]]
    if not isinstance(value, str):
        raise RecordError(f"{field}.{given[0]}", f"is {a_json_type(value)}; expected a string")
    return value


def content_parts(content: object, field: str) -> tuple[str, list[dict]]:
    """Message content as its joined text and, when it is an array, its parts in order: `{"type": "text",
    "text"}` and `{"type": "image", "url", "field"}` (from OpenAI's `image_url` parts; `field` is where the
    url sits in the record, for error messages)."""
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise RecordError(field, f"is {a_json_type(content)}; expected a string or an array of content parts")
    parts = []
    for i, part in enumerate(content):
        where = f"{field}[{i}]"
        if not isinstance(part, dict):
            raise RecordError(where, f"is {a_json_type(part)}; expected {CONTENT_PART_SHAPES}")
        if part.get("type") == "text":
            parts.append({"type": "text", "text": part_text(part, where)})
        elif part.get("type") == "image_url":
            parts.append(image_part(part, where))
        else:
            raise RecordError(f"{where}.type", f"is {json.dumps(part.get('type'))}; only \"text\" and "
                              "\"image_url\" parts are supported")
    return "".join(part["text"] for part in parts if part["type"] == "text"), parts


CONTENT_PART_SHAPES = '{"type": "text", "text": ...} or {"type": "image_url", "image_url": {"url": ...}}'
IMAGE_DETAILS = ("auto", "low", "high")


def part_text(part: dict, where: str) -> str:
    text = part.get("text")
    if not isinstance(text, str):
        raise RecordError(f"{where}.text", f"is {a_json_type(text)}; expected a string")
    return text


def image_part(part: dict, where: str) -> dict:
    """An `image_url` content part as `{"type": "image", "url", "field"}` (the image itself is read later)."""
    spec = part.get("image_url")
    if isinstance(spec, str):  # a bare url string, as some clients send it
        spec = {"url": spec}
    if not isinstance(spec, dict):
        raise RecordError(f"{where}.image_url", f"is {a_json_type(spec) if 'image_url' in part else 'missing'}; "
                          'expected {"url": ...}')
    url = spec.get("url")
    if not isinstance(url, str) or not url.strip():
        found = "empty" if isinstance(url, str) else a_json_type(url) if "url" in spec else "missing"
        raise RecordError(f"{where}.image_url.url", f"is {found}; "
                          "expected a data:image/...;base64 URL, a file path or an uploaded file id")
    detail = spec.get("detail", "auto")
    if detail not in IMAGE_DETAILS:
        raise RecordError(f"{where}.image_url.detail", f"is {json.dumps(detail)}; expected auto, low or high")
    return {"type": "image", "url": url, "field": f"{where}.image_url.url"}


def example_image_parts(example: Example) -> list[dict]:
    """Every image part of an example's messages, in order (replies never hold images)."""
    return conversation_image_parts(example.messages or [])


def conversation_image_parts(messages: list[dict]) -> list[dict]:
    """The image parts of a conversation of parsed messages (`parse_message`), in order."""
    return [part for m in messages for part in m.get("parts", []) if part["type"] == "image"]


def check_conversation(messages: list[dict]) -> None:
    """Check the turn structure: a user message before the first reply, and something to train on."""
    replies = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    if not replies:
        raise RecordError("messages", "has no assistant message; there is nothing to train on")
    first_turn = next(i for i, m in enumerate(messages) if m["role"] != "system")
    if messages[first_turn]["role"] == "assistant":
        # Chat templates that insert a default system prompt render [] and [assistant] inconsistently,
        # and many templates reject it outright; a reply needs something to reply to.
        raise RecordError(f"messages[{first_turn}].role", "is 'assistant'; the conversation must start with a user message")
    if not any(messages[i]["weight"] == 1 for i in replies):
        raise RecordError("messages", "every assistant message has weight 0; at least one must have weight 1")


def parse_prompt_completion(obj: dict) -> Example:
    """`{"prompt", "completion"}` -> a user message and an assistant reply."""
    prompt = required_text(obj, "prompt")
    completion = required_text(obj, "completion")
    return Example(format="prompt_completion", messages=[user(prompt), assistant(completion)])


def parse_alpaca(obj: dict) -> Example:
    """`{"instruction", "input"?, "output"}` -> user = instruction (+ blank line + input), assistant = output."""
    instruction = required_text(obj, "instruction")
    extra = obj.get("input", "")
    if extra is None:
        extra = ""
    if not isinstance(extra, str):
        raise RecordError("input", f"is {a_json_type(extra)}; expected a string")
    output = required_text(obj, "output")
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    return Example(format="alpaca", messages=[user(prompt), assistant(output)])


def parse_text(obj: dict) -> Example:
    """`{"text"}` -> raw text for continued pre-training; every token is a target."""
    return Example(format="text", text=required_text(obj, "text"))


def parse_preference(obj: dict) -> Example:
    """A prompt and two replies, the first preferred: `{"prompt"|"messages", "chosen", "rejected"}` or
    OpenAI's `{"input": {"messages"}, "preferred_output", "non_preferred_output"}`.

    Replies are a string or a list of assistant messages (OpenAI's shape); the prompt is a string or
    a conversation ending with a user turn (its assistant turns are context, never trained on).
    """
    if "preferred_output" in obj or "non_preferred_output" in obj:
        keys, prompt_field = ("preferred_output", "non_preferred_output"), "input.messages"
        source = obj.get("input")
        if not isinstance(source, dict):
            raise RecordError("input", f"is {a_json_type(source) if 'input' in obj else 'missing'}; "
                              'expected {"messages": [...]}')
        if "messages" not in source:
            raise RecordError("input.messages", "is missing")
        prompt = source["messages"]
    else:
        keys = ("chosen", "rejected")
        if ("prompt" in obj) == ("messages" in obj):
            raise RecordError("", 'needs exactly one of "prompt" and "messages" beside chosen/rejected')
        prompt_field = "prompt" if "prompt" in obj else "messages"
        prompt = obj[prompt_field]
    messages = preference_prompt(prompt, prompt_field)
    chosen, rejected = (preference_reply(obj, key) for key in keys)
    return Example(format="preference", messages=messages, chosen=chosen, rejected=rejected)


def parse_judged(obj: dict) -> Example:
    """One reply judged good or bad (KTO's unpaired data): `{"prompt"|"messages", "completion", "label": bool}`."""
    if ("prompt" in obj) == ("messages" in obj):
        raise RecordError("", 'needs exactly one of "prompt" and "messages" beside completion/label')
    field = "prompt" if "prompt" in obj else "messages"
    label = obj["label"]
    if not isinstance(label, bool):
        raise RecordError("label", f"is {a_json_type(label)}; expected true (a desirable completion) or false")
    return Example(format="judged", messages=preference_prompt(obj[field], field),
                   completion=preference_reply(obj, "completion"), desirable=label)


def preference_prompt(prompt: object, field: str) -> list[dict]:
    """The prompt as messages ending with a user turn; earlier assistant turns get weight 0."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise RecordError(field, "is empty")
        return [user(prompt)]
    if not isinstance(prompt, list) or not prompt:
        raise RecordError(field, f"is {a_json_type(prompt)}; expected a string or a non-empty array of messages")
    messages = [parse_message(m, f"{field}[{i}]") for i, m in enumerate(prompt)]
    if messages[-1]["role"] != "user":
        raise RecordError(f"{field}[{len(messages) - 1}].role",
                          f"is {messages[-1]['role']!r}; the prompt must end with a user message")
    return [{**m, "weight": 0} if m["role"] == "assistant" else m for m in messages]


def preference_reply(obj: dict, key: str) -> list[dict]:
    """One reply: a string, or a non-empty array of assistant messages."""
    if key not in obj:
        raise RecordError(key, "is missing")
    value = obj[key]
    if isinstance(value, str):
        if not value.strip():
            raise RecordError(key, "is empty")
        return [assistant(value)]
    if not isinstance(value, list) or not value:
        raise RecordError(key, f"is {a_json_type(value)}; expected a string or an array of assistant messages")
    replies = [parse_message(m, f"{key}[{i}]") for i, m in enumerate(value)]
    for i, reply in enumerate(replies):
        if reply["role"] != "assistant":
            raise RecordError(f"{key}[{i}].role", f"is {reply['role']!r}; replies are assistant messages")
    return [{**m, "weight": 1} for m in replies]


def ends_with_user_turn(messages: object) -> bool:
    return isinstance(messages, list) and bool(messages) and isinstance(messages[-1], dict) \
        and messages[-1].get("role") == "user"


def parse_graded_prompt(obj: dict) -> Example:
    """`{"messages": [... ending with a user turn], **fields}`: a prompt to sample replies to and the
    fields a grader compares them with; earlier assistant turns are context (weight 0)."""
    messages = [parse_message(m, f"messages[{i}]") for i, m in enumerate(obj["messages"])]
    first_turn = next(i for i, m in enumerate(messages) if m["role"] != "system")
    if messages[first_turn]["role"] == "assistant":
        raise RecordError(f"messages[{first_turn}].role", "is 'assistant'; the conversation must start with a user message")
    messages = [{**m, "weight": 0} if m["role"] == "assistant" else m for m in messages]
    return Example(format="graded_prompt", messages=messages, item={k: v for k, v in obj.items() if k != "messages"})


def parse_labelled(obj: dict) -> Example:
    """`{"text", "label"}` for classification; a label is a string, or a number/boolean used as its text."""
    text = required_text(obj, "text")
    label = obj["label"]
    if isinstance(label, bool):
        label = "true" if label else "false"
    elif isinstance(label, (int, float)):
        label = str(label)
    if not isinstance(label, str):
        raise RecordError("label", f"is {a_json_type(label)}; expected a string or a number")
    if not label.strip():
        raise RecordError("label", "is empty")
    return Example(format="labelled", text=text, label=label)


PARSERS = {
    "chat": parse_chat,
    "prompt_completion": parse_prompt_completion,
    "alpaca": parse_alpaca,
    "text": parse_text,
    "preference": parse_preference,
    "labelled": parse_labelled,
    "graded_prompt": parse_graded_prompt,
    "judged": parse_judged,
}


def required_text(obj: dict, key: str) -> str:
    """The non-empty string at `obj[key]`, or a RecordError naming the key."""
    if key not in obj:
        raise RecordError(key, "is missing")
    value = obj[key]
    if not isinstance(value, str):
        raise RecordError(key, f"is {a_json_type(value)}; expected a string")
    if not value.strip():
        raise RecordError(key, "is empty")
    return value


def user(content: str) -> dict:
    return {"role": "user", "content": content, "weight": 1}


def assistant(content: str) -> dict:
    return {"role": "assistant", "content": content, "weight": 1}


def example_key(example: Example) -> str:
    """A hash of the example's normalized content: roles and texts, whitespace collapsed, weights ignored.

    Two records with the same key train the same thing (a prompt/completion and an alpaca record
    with the same texts collide on purpose); the validation split keys on it so duplicates never
    straddle train and validation.
    """
    if example.text is not None:
        normalized = ["text", squash(example.text)]
        if example.label is not None:
            normalized.append(example.label)
    else:
        normalized = [[m["role"], squash(m["content"]), *call_keys(m), *m.get("images", [])]
                      for m in example.messages or []]
        if example.tools:
            normalized.append(example.tools)
        if example.chosen is not None:
            normalized += [[[m["role"], squash(m["content"])] for m in side]
                           for side in (example.chosen, example.rejected or [])]
        if example.completion is not None:
            normalized += [[[m["role"], squash(m["content"])] for m in example.completion], example.desirable]
        if example.item:
            normalized.append(json.dumps(example.item, sort_keys=True, ensure_ascii=False))
    payload = json.dumps(normalized, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def call_keys(message: dict) -> list:
    """A message's calls by name and arguments (ids differ between otherwise equal records)."""
    return [[c["function"]["name"], json.loads(c["function"]["arguments"])] for c in message.get("tool_calls") or []]


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()
