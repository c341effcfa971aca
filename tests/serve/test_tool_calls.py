"""Function calling end to end: a tiny LoRA trained on tool-call records, served on loopback; the official
client gets its calls back parsed as tool_calls (plain and streamed), and `hone eval` scores them."""

import json

import pytest

from tests.data.records import weather_record

ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def call_record():
    """The user asks; the assistant answers with a get_weather call (the turn the model learns)."""
    record = weather_record()
    record["messages"] = record["messages"][:2]
    return record


@pytest.fixture(scope="module")
def tool_server(tiny_model_dir, tmp_path_factory):
    """(client, run dir, tools): the served tiny model with a LoRA that learned to call get_weather."""
    import openai

    from hone.api import train
    from hone.serve.app import create_app
    from hone.serve.run import running_server
    from hone.serve.settings import ServeSettings

    out = tmp_path_factory.mktemp("tools")
    data = out / "train.jsonl"
    data.write_text("".join(json.dumps(call_record()) + "\n" for _ in range(4)))
    result = train(None, [f"model={tiny_model_dir}", f"data.train={data}", f"output_dir={out}", "name=run",
                          "train.lr=1e-2", "train.threads=1", "data.max_length=512", "train.max_steps=150",
                          "train.batch_size=1", "method.rank=16", "method.alpha=32", "data.validation_fraction=0"],
                   progress=False, log=lambda *a: None)
    settings = ServeSettings(model=str(tiny_model_dir), adapters={"caller": str(result.run_dir)},
                             keys_file=str(out / "keys.json"), feedback_file=str(out / "f.jsonl"), max_tokens=64)
    with running_server(create_app(settings)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        yield client, result.run_dir, call_record()["tools"]


def test_the_tuned_models_call_comes_back_parsed_as_tool_calls(tool_server):
    client, _, tools = tool_server
    reply = client.chat.completions.create(model="caller", messages=ASK, tools=tools, max_tokens=64, temperature=0)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert "<tool_call>" not in (choice.message.content or "")


def test_streaming_delivers_the_same_call(tool_server):
    client, _, tools = tool_server
    chunks = list(client.chat.completions.create(model="caller", messages=ASK, tools=tools, max_tokens=64,
                                                 temperature=0, stream=True))
    calls = [c for chunk in chunks for c in (chunk.choices[0].delta.tool_calls or [])]
    assert [(c.index, c.function.name, json.loads(c.function.arguments)) for c in calls] == \
        [(0, "get_weather", {"city": "Paris"})]
    assert calls[0].id.startswith("call_") and chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_choice_none_returns_text_and_a_tool_result_turn_is_accepted(tool_server):
    client, _, tools = tool_server
    plain = client.chat.completions.create(model="caller", messages=ASK, tools=tools, tool_choice="none",
                                           max_tokens=8, temperature=0)
    assert plain.choices[0].message.tool_calls is None and plain.choices[0].finish_reason != "tool_calls"
    first = client.chat.completions.create(model="caller", messages=ASK, tools=tools, max_tokens=64, temperature=0)
    call = first.choices[0].message.tool_calls[0]
    follow_up = ASK + [first.choices[0].message.model_dump(exclude_none=True),
                       {"role": "tool", "tool_call_id": call.id, "content": "18C, sunny"}]
    assert client.chat.completions.create(model="caller", messages=follow_up, tools=tools, max_tokens=4).choices


def test_a_tool_message_answering_no_call_is_a_400_naming_it(tool_server):
    import openai

    client, _, tools = tool_server
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="caller", tools=tools, max_tokens=4, messages=ASK + [
            {"role": "tool", "tool_call_id": "call_nothing", "content": "18C"}])
    assert "tool_call_id" in caught.value.body["message"]


def test_hone_eval_scores_call_accuracy_per_item(tool_server, tmp_path):
    from hone import api

    _, run_dir, _ = tool_server
    rome = call_record()
    rome["messages"][0]["content"] = "What is the weather in Rome?"
    rome["messages"][1]["tool_calls"][0]["function"]["arguments"] = '{"city": "Rome"}'
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text(json.dumps(call_record()) + "\n" + json.dumps(rome) + "\n")
    result = api.evaluate(heldout, adapter=run_dir, grader={"type": "tool_call"}, max_new_tokens=64,
                          progress=False)
    paris, rome_grade = result.grades
    assert paris.score == 1.0 and paris.details["function_accuracy"] == 1.0
    assert rome_grade.score == 0.0  # it learned Paris only
    assert result.metrics["grader_score"] == 0.5


def test_parallel_tool_calls_false_keeps_the_first_call_and_unknown_functions_stay_text():
    from hone.serve.generation import Exchange, _final
    from hone.serve.protocol import ChatCompletionRequest

    tools = call_record()["tools"]
    text = ('<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>\n'
            '<tool_call>{"name": "get_time", "arguments": {"city": "Paris"}}</tool_call>\n'
            '<tool_call>{"name": "get_news", "arguments": {}}</tool_call>')

    def reply(**extra):
        body = ChatCompletionRequest(model="m", messages=ASK, tools=tools, **extra)
        ex = Exchange("chat", "chatcmpl-1", "m", None, [[1]], body, tools=body.offered_tools(),
                      texts={0: text}, finish={0: "stop"}, tokens={0: 3})
        return _final(ex)["choices"][0]

    both = reply()
    assert [c["function"]["name"] for c in both["message"]["tool_calls"]] == ["get_weather", "get_time"]
    assert both["message"]["content"] == '<tool_call>{"name": "get_news", "arguments": {}}</tool_call>'
    assert [c["function"]["name"] for c in reply(parallel_tool_calls=False)["message"]["tool_calls"]] == \
        ["get_weather"]
    assert reply(tool_choice="none")["message"] == {"role": "assistant", "content": text}
