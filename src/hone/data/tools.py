"""Function calling in OpenAI's chat shape: a record's `tools`, assistant `tool_calls`, `tool` messages.

Validation turns each into hone's message dicts (`tool_calls` as OpenAI's
`[{"id", "type": "function", "function": {"name", "arguments": JSON string}}]`, `tool_call_id` on a
tool message) and raises `RecordError` naming the field for what a fine-tune cannot use: arguments
that are not a JSON object, a call to a function the record does not list, a tool message answering
no earlier call, several calls in one turn when `parallel_tool_calls` is false.

Rendering (`conversation_for_template`): a chat template that renders tools itself (it is given
`tools=` and assistant `tool_calls`, and a probe conversation's function name and argument come out)
gets them that way. Any other template gets hone's rendering, plain role/content messages:
- the tools listing is a system block (`TOOLS_HEADER` then one JSON schema per line), added to the
  first system message or as a new one;
- an assistant call is a line `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` after the
  reply's text, one line per call;
- a tool result is a `tool` turn holding the result text.
The model's output is read back into calls by `parse_tool_calls`, which finds those `<tool_call>`
lines (the same tags several models' own templates use).
"""

from __future__ import annotations

import json
import re
import uuid

from hone.data.record_errors import RecordError, a_json_type, typed_objects

TOOLS_HEADER = ("You can call these functions. To call one, answer with a line "
                '<tool_call>{"name": <function name>, "arguments": <arguments object>}</tool_call> '
                "for each call.\nFunctions:")
CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


# -- validating records ---------------------------------------------------------------------------
def parse_tools(tools: object, field: str = "tools") -> list[dict]:
    """A record's `tools`: a list of `{"type": "function", "function": {"name", "description"?, "parameters"?}}`."""
    if not isinstance(tools, list) or not tools:
        raise RecordError(field, f"is {a_json_type(tools)}; expected a non-empty array of "
                          '{"type": "function", "function": {"name": ..., "parameters": {...}}}')
    names: set[str] = set()
    parsed = []
    for where, tool in typed_objects(tools, field, "function", "tools", '{"type": "function", "function": {...}}'):
        function = tool.get("function")
        if not isinstance(function, dict):
            raise RecordError(f"{where}.function", f"is {a_json_type(function)}; expected {{\"name\": ..., "
                              "\"parameters\": {...}}")
        name = function.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_\-.]{1,64}", name):
            raise RecordError(f"{where}.function.name", f"is {json.dumps(name)}; expected a name of letters, "
                              "digits, _, - and . (at most 64)")
        if name in names:
            raise RecordError(f"{where}.function.name", f"{name!r} is listed twice")
        names.add(name)
        if "parameters" in function and not isinstance(function["parameters"], dict):
            raise RecordError(f"{where}.function.parameters",
                              f"is {a_json_type(function['parameters'])}; expected a JSON schema object")
        if "description" in function and not isinstance(function["description"], str):
            raise RecordError(f"{where}.function.description", "expected a string")
        parsed.append({"type": "function", "function": {k: function[k] for k in ("name", "description", "parameters")
                                                        if k in function}})
    return parsed


def parse_tool_calls_field(calls: object, field: str) -> list[dict]:
    """An assistant message's `tool_calls`, each `{"id", "type": "function", "function": {"name", "arguments"}}`
    with `arguments` a string holding a JSON object."""
    if not isinstance(calls, list) or not calls:
        raise RecordError(field, f"is {a_json_type(calls)}; expected a non-empty array of calls")
    parsed = []
    for i, call in enumerate(calls):
        where = f"{field}[{i}]"
        if not isinstance(call, dict):
            raise RecordError(where, f"is {a_json_type(call)}; expected "
                              '{"id": ..., "type": "function", "function": {"name": ..., "arguments": "{...}"}}')
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            raise RecordError(f"{where}.id", f"is {json.dumps(call_id)}; expected the call's id, a string that "
                              "the tool message answering it gives as tool_call_id")
        if call.get("type", "function") != "function":
            raise RecordError(f"{where}.type", f"is {json.dumps(call.get('type'))}; expected \"function\"")
        function = call.get("function")
        if not isinstance(function, dict):
            raise RecordError(f"{where}.function", f"is {a_json_type(function)}; expected {{\"name\": ..., "
                              "\"arguments\": \"{...}\"}")
        if not isinstance(function.get("name"), str) or not function["name"]:
            raise RecordError(f"{where}.function.name", f"is {json.dumps(function.get('name'))}; expected a string")
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            raise RecordError(f"{where}.function.arguments", f"is {a_json_type(arguments)}; expected a string "
                              "holding a JSON object, e.g. \"{\\\"city\\\": \\\"Paris\\\"}\"")
        arguments_object(arguments, f"{where}.function.arguments")
        parsed.append({"id": call_id, "type": "function",
                       "function": {"name": function["name"], "arguments": arguments}})
    return parsed


def arguments_object(arguments: str, field: str) -> dict:
    """The arguments string parsed; it must be a JSON object."""
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError as error:
        raise RecordError(field, f"is not valid JSON: {error.msg} (column {error.colno})") from None
    except RecursionError:
        raise RecordError(field, "is nested too deeply") from None
    if not isinstance(value, dict):
        raise RecordError(field, f"is {a_json_type(value)} in JSON; expected a JSON object of arguments")
    return value


def check_tool_turns(messages: list[dict], tools: list[dict] | None, parallel: bool) -> None:
    """Cross-checks over a conversation: calls name listed functions (unless `tools` is None), each tool
    message answers an earlier unanswered call, and no turn holds several calls when `parallel` is false."""
    names = {tool["function"]["name"] for tool in tools or []}
    open_calls: set[str] = set()
    for i, message in enumerate(messages):
        calls = message.get("tool_calls") or []
        if len(calls) > 1 and not parallel:
            raise RecordError(f"messages[{i}].tool_calls", f"has {len(calls)} calls but parallel_tool_calls is "
                              "false; give one call per assistant turn or drop parallel_tool_calls")
        for k, call in enumerate(calls):
            name = call["function"]["name"]
            if tools is not None and name not in names:
                listed = ", ".join(sorted(names)) if names else "none (the record has no tools)"
                raise RecordError(f"messages[{i}].tool_calls[{k}].function.name",
                                  f"calls {name!r}, which is not in tools; listed: {listed}")
            if call["id"] in open_calls:
                raise RecordError(f"messages[{i}].tool_calls[{k}].id", f"{call['id']!r} is used by an earlier call")
            open_calls.add(call["id"])
        if message["role"] == "tool":
            answered = message["tool_call_id"]
            if answered not in open_calls:
                raise RecordError(f"messages[{i}].tool_call_id", f"is {answered!r}, which matches no earlier "
                                  "unanswered call id in this conversation")
            open_calls.discard(answered)


# -- rendering ------------------------------------------------------------------------------------
def uses_tools(messages: list[dict], tools: list[dict] | None) -> bool:
    return bool(tools) or any(m.get("tool_calls") or m["role"] == "tool" for m in messages)


def calls_text(calls: list[dict]) -> str:
    """hone's rendering of calls: one `<tool_call>{"name", "arguments"}</tool_call>` line each."""
    return "\n".join(
        "<tool_call>" + json.dumps({"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])},
                                   ensure_ascii=False) + "</tool_call>"
        for c in calls)


def tools_text(tools: list[dict]) -> str:
    """hone's system block listing the tools, one JSON schema per line."""
    return "\n".join([TOOLS_HEADER, *(json.dumps(tool["function"], ensure_ascii=False) for tool in tools)])


def reply_text(message: dict) -> str:
    """An assistant message as hone renders it: its text, then a `<tool_call>` line per call."""
    if not message.get("tool_calls"):
        return message["content"]
    return "\n".join(part for part in (message["content"].strip(), calls_text(message["tool_calls"])) if part)


def template_message(message: dict, content: str) -> dict:
    """What a chat template reads of a message: its role, `content`, and an assistant's reasoning under
    both names templates read (`reasoning_content`, `thinking`)."""
    out = {"role": message["role"], "content": content}
    if message.get("reasoning"):
        out["reasoning_content"] = out["thinking"] = message["reasoning"]
    return out


def hone_rendering(messages: list[dict], tools: list[dict] | None) -> list[dict]:
    """Role/content messages for a template without tool support (see the module docstring)."""
    plain = [template_message(message, reply_text(message)) for message in messages]
    if tools:
        listing = tools_text(tools)
        if plain and plain[0]["role"] == "system":
            plain[0] = {"role": "system", "content": f"{plain[0]['content']}\n\n{listing}".lstrip()}
        else:
            plain.insert(0, {"role": "system", "content": listing})
    return plain


def native_messages(messages: list[dict]) -> list[dict]:
    """Messages as templates with tool support take them: calls' arguments as objects."""
    out = []
    for message in messages:
        native = template_message(message, message["content"])
        if message.get("tool_calls"):
            native["tool_calls"] = [{"id": c["id"], "type": "function",
                                     "function": {"name": c["function"]["name"],
                                                  "arguments": json.loads(c["function"]["arguments"])}}
                                    for c in message["tool_calls"]]
        if message["role"] == "tool":
            native["tool_call_id"] = message["tool_call_id"]
        out.append(native)
    return out


PROBE_TOOL = {"type": "function", "function": {"name": "probe_lookup_7", "description": "probe",
                                               "parameters": {"type": "object",
                                                              "properties": {"probe_key": {"type": "string"}}}}}
PROBE_MESSAGES = [
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_probe", "type": "function",
         "function": {"name": "probe_lookup_7", "arguments": '{"probe_key": "probe_value_9"}'}}]},
    {"role": "tool", "tool_call_id": "call_probe", "content": "probe_result_3"},
    {"role": "assistant", "content": "done"},
]


def renders_tools_natively(apply) -> bool:
    """Whether a template renders tools itself: `apply(messages, tools)` (the template applied) on a probe
    conversation must show the tool listing, the call's name and argument, and the tool result."""
    try:
        text = apply(native_messages(PROBE_MESSAGES), [PROBE_TOOL])
    except Exception:  # noqa: BLE001 - a template that raises on tool turns does not support them
        return False
    listed = text.count("probe_lookup_7") >= 2  # once in the listing, once in the call
    return listed and "probe_value_9" in text and "probe_result_3" in text


# -- reading a model's output ---------------------------------------------------------------------
def parse_tool_calls(text: str, names: set[str] | None = None) -> tuple[str, list[dict]]:
    """(the text outside the calls, the calls) from a model output holding `<tool_call>{...}</tool_call>`.

    Each call comes back in OpenAI's shape with a fresh `call_...` id and its arguments as a JSON string.
    A block that is not a JSON object with a string `name` (and an `arguments` object, or `parameters`),
    or that names a function outside `names` when given, stays in the text.
    """
    calls = []
    kept = []
    last = 0
    for match in CALL.finditer(text):
        call = call_from_json(match.group(1), names)
        if call is None:
            continue
        kept.append(text[last:match.start()])
        last = match.end()
        calls.append(call)
    kept.append(text[last:])
    return "".join(kept).strip(), calls


def call_from_json(body: str, names: set[str] | None) -> dict | None:
    try:
        value = json.loads(body)
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except (json.JSONDecodeError, RecursionError):
            return None
    if not isinstance(arguments, dict) or (names is not None and value["name"] not in names):
        return None
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
            "function": {"name": value["name"], "arguments": json.dumps(arguments, ensure_ascii=False)}}
