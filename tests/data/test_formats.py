import pytest

from hone.data.formats import Example, RecordError, example_key, parse_record

from .records import chat


def test_chat_record_keeps_roles_contents_and_weights():
    example = parse_record(
        chat(("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello", 0), ("user", "Again"), ("assistant", "Hi!"))
    )
    assert example.format == "chat"
    assert example.text is None
    assert [(m["role"], m["content"], m["weight"]) for m in example.messages] == [
        ("system", "Be brief.", 1),
        ("user", "Hi", 1),
        ("assistant", "Hello", 0),
        ("user", "Again", 1),
        ("assistant", "Hi!", 1),
    ]


def test_chat_content_parts_are_joined_and_name_and_extra_keys_allowed():
    record = {
        "id": "abc",
        "metadata": {"source": "x"},
        "messages": [
            {"role": "user", "name": "ann", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]},
            {"role": "assistant", "content": "Hi"},
        ],
    }
    example = parse_record(record)
    assert example.messages[0] == {"role": "user", "content": "Hello there", "weight": 1}


def test_prompt_completion_becomes_user_and_assistant():
    example = parse_record({"prompt": "2+2?", "completion": "4", "id": 7})
    assert example.format == "prompt_completion"
    assert [(m["role"], m["content"]) for m in example.messages] == [("user", "2+2?"), ("assistant", "4")]


def test_alpaca_joins_instruction_and_input_with_a_blank_line():
    example = parse_record({"instruction": "Translate.", "input": "bonjour", "output": "hello"})
    assert example.format == "alpaca"
    assert [(m["role"], m["content"]) for m in example.messages] == [
        ("user", "Translate.\n\nbonjour"),
        ("assistant", "hello"),
    ]


@pytest.mark.parametrize("record", [{"instruction": "Say hi.", "output": "hi"}, {"instruction": "Say hi.", "input": "", "output": "hi"}])
def test_alpaca_without_input_uses_instruction_alone(record):
    assert parse_record(record).messages[0]["content"] == "Say hi."


def test_text_record():
    example = parse_record({"text": "Once upon a time.", "meta": 1})
    assert (example.format, example.text, example.messages) == ("text", "Once upon a time.", None)


@pytest.mark.parametrize(
    "record, field, words",
    [
        ({"prompt": "a", "completion": "b", "text": "c"}, "", "mix formats prompt_completion and text"),
        ({"id": 1, "question": "q"}, "", "unknown format (keys: id, question)"),
        ({"prompt": "a"}, "completion", "is missing"),
        ({"messages": {"role": "user"}}, "messages", "is an object; expected an array"),
        (chat(("user", 3), ("assistant", "x")), "messages[0].content", "is a number"),
        (chat(("user", "q"), ("assistant", [{"type": "input_audio"}])), "messages[1].content[0].type", "only \"text\""),
        (chat(("user", "q"), ("assistant", "a", 1.0)), "messages[1].weight", "expected 0 or 1"),
        (chat(("user", "q"), ("assistant", "a", True)), "messages[1].weight", "expected 0 or 1"),
        (chat(("user", "q", 0), ("assistant", "a")), "messages[0].weight", "only assistant messages"),
        ({"messages": [{"role": "user", "content": "q", "tool_calls": []}]}, "messages[0].tool_calls", "unexpected key"),
        (chat(("user", "q"), ("assistant", "a", 0)), "messages", "at least one must have weight 1"),
        (chat(("assistant", "a"), ("user", "q")), "messages[0].role", "must start with a user message"),
        (chat(("user", "   "), ("assistant", "a")), "messages[0].content", "is empty"),
        ({"text": ""}, "text", "is empty"),
        ({"instruction": "i", "input": 5, "output": "o"}, "input", "is a number"),
    ],
)
def test_record_errors_name_the_field(record, field, words):
    with pytest.raises(RecordError) as caught:
        parse_record(record)
    assert caught.value.field == field
    assert words in caught.value.message


def test_unknown_format_lists_every_accepted_shape():
    with pytest.raises(RecordError) as caught:
        parse_record({"question": "q", "answer": "a"})
    for name in ("chat", "prompt_completion", "alpaca", "text"):
        assert name in caught.value.message


def test_empty_system_message_is_allowed():
    example = parse_record(chat(("system", ""), ("user", "q"), ("assistant", "a")))
    assert example.messages[0]["content"] == ""


def test_example_key_ignores_whitespace_and_weights_but_not_content():
    a = parse_record(chat(("user", "Hello  world"), ("assistant", "Hi")))
    b = parse_record(chat(("user", " Hello\nworld "), ("assistant", "Hi", 1)))
    c = parse_record(chat(("user", "Hello world"), ("assistant", "Bye")))
    assert example_key(a) == example_key(b)
    assert example_key(a) != example_key(c)


def test_example_key_matches_across_formats_with_the_same_turns():
    pc = parse_record({"prompt": "q", "completion": "a"})
    alpaca = parse_record({"instruction": "q", "output": "a"})
    text = Example(format="text", text="q a")
    assert example_key(pc) == example_key(alpaca) != example_key(text)
