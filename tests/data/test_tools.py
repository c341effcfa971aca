"""Function-calling records: parsing, line-numbered errors, rendering (hone's and a template's own), the mask."""

import copy
import json

import pytest

from hone.data.formats import example_key, parse_record
from hone.data.read import read_examples
from hone.data.template import IGNORE, prompt_ids, render, template_renders_tools, tokenize_example
from hone.data.tools import TOOLS_HEADER, parse_tool_calls

from .records import TIME_TOOL, WEATHER_TOOL, chat, tool_call, weather_record

# A template that renders tools itself: a listing after the system turn, calls as <call name=...> tags.
NATIVE_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTOOLS {{ tools | tojson }}<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content or '' }}"
    "{% for c in m.tool_calls or [] %}<call name={{ c.function.name }}>{{ c.function.arguments | tojson }}</call>"
    "{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def targets(tokenized, tokenizer):
    return tokenizer.decode([t for t, label in zip(tokenized.input_ids, tokenized.labels) if label != IGNORE])


def test_a_tool_record_parses_into_calls_tool_turns_and_tools():
    example = parse_record(weather_record())
    assert example.format == "chat" and [t["function"]["name"] for t in example.tools] == ["get_weather", "get_time"]
    call = example.messages[1]
    assert call["content"] == "" and call["tool_calls"][0]["function"] == {"name": "get_weather",
                                                                           "arguments": '{"city": "Paris"}'}
    assert example.messages[2] == {"role": "tool", "content": "18C, sunny", "weight": 1, "tool_call_id": "call_1"}


def test_parallel_calls_are_accepted_unless_parallel_tool_calls_is_false():
    record = weather_record()
    record["messages"][1]["tool_calls"].append(tool_call("get_time", {"city": "Paris"}, "call_2"))
    record["messages"].insert(3, {"role": "tool", "tool_call_id": "call_2", "content": "14:00"})
    assert len(parse_record(record).messages[1]["tool_calls"]) == 2
    with pytest.raises(ValueError, match=r"messages\[1\].tool_calls: has 2 calls but parallel_tool_calls is false"):
        parse_record({**record, "parallel_tool_calls": False})


def broken(change):
    record = weather_record()
    change(record)
    return record


BROKEN = [
    (lambda r: r["messages"][1]["tool_calls"][0]["function"].update(arguments='{"city": Paris}'),
     "messages[1].tool_calls[0].function.arguments: is not valid JSON"),
    (lambda r: r["messages"][1]["tool_calls"][0]["function"].update(arguments='["Paris"]'),
     "messages[1].tool_calls[0].function.arguments: is an array in JSON; expected a JSON object"),
    (lambda r: r["messages"][1]["tool_calls"][0]["function"].update(arguments={"city": "Paris"}),
     "messages[1].tool_calls[0].function.arguments: is an object; expected a string"),
    (lambda r: r["messages"][2].pop("tool_call_id"),
     "messages[2].tool_call_id: is missing; a tool message gives the id of the call it answers"),
    (lambda r: r["messages"][2].update(tool_call_id="call_9"),
     "messages[2].tool_call_id: is 'call_9', which matches no earlier unanswered call id"),
    (lambda r: r["messages"][1]["tool_calls"][0]["function"].update(name="get_news"),
     "messages[1].tool_calls[0].function.name: calls 'get_news', which is not in tools; listed: get_time, get_weather"),
    (lambda r: r.pop("tools"),
     "messages[1].tool_calls[0].function.name: calls 'get_weather', which is not in tools; listed: none"),
    (lambda r: r["tools"][0].update(type="code_interpreter"), "tools[0].type: is \"code_interpreter\""),
    (lambda r: r["tools"].append(WEATHER_TOOL), "tools[2].function.name: 'get_weather' is listed twice"),
    (lambda r: r["messages"][0].update(tool_calls=[tool_call("get_weather", {})]),
     "messages[0].tool_calls: is set on a user message"),
    (lambda r: r["messages"][1]["tool_calls"][0].pop("id"), "messages[1].tool_calls[0].id: is null"),
    (lambda r: r.update(parallel_tool_calls="yes"), "parallel_tool_calls: is a string; expected true or false"),
    (lambda r: r.update(functions=[WEATHER_TOOL["function"]]), "functions: is the legacy function-calling format"),
]


@pytest.mark.parametrize("change, message", BROKEN)
def test_malformed_tool_lines_are_reported_with_their_line_and_field(write_jsonl, change, message):
    path = write_jsonl([weather_record(), broken(change)])
    examples, issues = read_examples(path, strict=False)
    assert len(examples) == 1 and len(issues) == 1
    assert str(issues[0]).startswith(f"{path}:2: {message}")


def test_tool_keys_stay_out_of_preference_records():
    with pytest.raises(ValueError, match=r"chosen\[0\].tool_calls: unexpected key"):
        parse_record({"prompt": "p", "rejected": "r",
                      "chosen": [{"role": "assistant", "content": "", "tool_calls": []}]})


def test_duplicates_compare_calls_by_name_and_arguments_not_ids():
    a, b, c = weather_record(), weather_record(), weather_record("Rome")
    for record in (b,):
        record["messages"][1]["tool_calls"][0]["id"] = "call_x"
        record["messages"][2]["tool_call_id"] = "call_x"
    assert example_key(parse_record(a)) == example_key(parse_record(b)) != example_key(parse_record(c))
    plain = chat(("user", "What is the weather in Paris?"), ("assistant", "It is 18C and sunny."))
    assert example_key(parse_record(plain)) != example_key(parse_record(a))


def test_hone_rendering_lists_tools_in_a_system_block_and_calls_as_tool_call_lines(tiny_tokenizer):
    assert not template_renders_tools(tiny_tokenizer.chat_template, tiny_tokenizer)
    example = parse_record(weather_record())
    text = render(example.messages, tiny_tokenizer, tools=example.tools)
    assert text.startswith("<|im_start|>system\n" + TOOLS_HEADER)
    assert json.dumps(WEATHER_TOOL["function"]) in text and json.dumps(TIME_TOOL["function"]) in text
    call = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    assert f"<|im_start|>assistant\n{call}<|im_end|>\n<|im_start|>tool\n18C, sunny<|im_end|>" in text
    assert parse_tool_calls(call, {"get_weather"})[1][0]["function"]["arguments"] == '{"city": "Paris"}'


def test_loss_falls_on_calls_and_replies_not_on_tool_results_or_the_listing(tiny_tokenizer):
    tokenized = tokenize_example(parse_record(weather_record()), tiny_tokenizer)
    assert targets(tokenized, tiny_tokenizer) == (
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call><|im_end|>'
        "It is 18C and sunny.<|im_end|>")
    # the tokens before the call are exactly what a generation request with the same tools starts from
    example = parse_record(weather_record())
    start = tokenized.labels.index(next(label for label in tokenized.labels if label != IGNORE))
    assert tokenized.input_ids[:start] == prompt_ids(example.messages[:1], tiny_tokenizer, tools=example.tools)


def test_a_call_turn_with_weight_0_is_not_trained(tiny_tokenizer):
    record = weather_record()
    record["messages"][1]["weight"] = 0
    assert targets(tokenize_example(parse_record(record), tiny_tokenizer), tiny_tokenizer) == \
        "It is 18C and sunny.<|im_end|>"


def test_a_template_with_tool_support_renders_them_its_own_way_and_the_mask_follows(tiny_tokenizer):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = NATIVE_TEMPLATE
    assert template_renders_tools(NATIVE_TEMPLATE, tokenizer)
    example = parse_record(weather_record())
    text = render(example.messages, tokenizer, tools=example.tools)
    assert text.startswith("<|im_start|>system\nTOOLS [") and TOOLS_HEADER not in text
    assert '<call name=get_weather>{"city": "Paris"}</call>' in text
    assert targets(tokenize_example(example, tokenizer), tokenizer) == (
        '<call name=get_weather>{"city": "Paris"}</call><|im_end|>It is 18C and sunny.<|im_end|>')


def test_the_default_models_template_gets_hones_rendering_and_the_same_mask(default_tokenizer):
    assert not template_renders_tools(default_tokenizer.chat_template, default_tokenizer)
    tokenized = tokenize_example(parse_record(weather_record()), default_tokenizer)
    assert targets(tokenized, default_tokenizer) == (
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call><|im_end|>'
        "It is 18C and sunny.<|im_end|>")
