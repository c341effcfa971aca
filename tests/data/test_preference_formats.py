"""Preference and labelled records: both preference shapes, line-numbered errors, and data check."""

import pytest

from hone.data.formats import RecordError, example_key, parse_record
from hone.data.read import read_examples
from hone.data.report import check_file

PROMPT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def test_common_shape_with_a_string_prompt():
    example = parse_record({"prompt": "2+2?", "chosen": "4", "rejected": "Let me think... 4"})
    assert example.format == "preference"
    assert example.messages == [{"role": "user", "content": "2+2?", "weight": 1}]
    assert example.chosen == [{"role": "assistant", "content": "4", "weight": 1}]
    assert example.rejected[0]["content"] == "Let me think... 4"


def test_openai_shape_and_earlier_assistant_turns_are_context():
    messages = [*PROMPT, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}]
    example = parse_record({"input": {"messages": messages},
                            "preferred_output": [{"role": "assistant", "content": "Bye."}],
                            "non_preferred_output": [{"role": "assistant", "content": "Goodbye, take care!"}]})
    assert example.format == "preference"
    assert [m["weight"] for m in example.messages if m["role"] == "assistant"] == [0]
    assert example.chosen[0]["content"] == "Bye." and example.rejected[0]["content"] == "Goodbye, take care!"


def test_both_shapes_of_the_same_pair_are_duplicates():
    common = parse_record({"messages": PROMPT, "chosen": "a", "rejected": "b"})
    openai = parse_record({"input": {"messages": PROMPT}, "preferred_output": [{"role": "assistant", "content": "a"}],
                           "non_preferred_output": [{"role": "assistant", "content": "b"}]})
    swapped = parse_record({"messages": PROMPT, "chosen": "b", "rejected": "a"})
    assert example_key(common) == example_key(openai) != example_key(swapped)


@pytest.mark.parametrize("record, field, message", [
    ({"prompt": "q", "chosen": "a"}, "rejected", "is missing"),
    ({"prompt": "q", "messages": PROMPT, "chosen": "a", "rejected": "b"}, "", 'exactly one of "prompt" and "messages"'),
    ({"messages": [*PROMPT, {"role": "assistant", "content": "x"}], "chosen": "a", "rejected": "b"},
     "messages[2].role", "must end with a user message"),
    ({"prompt": "q", "chosen": "", "rejected": "b"}, "chosen", "is empty"),
    ({"prompt": "q", "chosen": 3, "rejected": "b"}, "chosen", "is a number"),
    ({"input": {"messages": PROMPT}, "preferred_output": [{"role": "user", "content": "a"}],
      "non_preferred_output": "b"}, "preferred_output[0].role", "replies are assistant messages"),
    ({"input": "hi", "preferred_output": "a", "non_preferred_output": "b"}, "input", 'expected {"messages"'),
    ({"text": "t", "label": None}, "label", "is null"),
    ({"text": "", "label": "x"}, "text", "is empty"),
])
def test_bad_records_name_the_field(record, field, message):
    with pytest.raises(RecordError) as error:
        parse_record(record)
    assert error.value.field == field and message in error.value.message


def test_labels_may_be_numbers_or_booleans():
    assert parse_record({"text": "t", "label": 3}).label == "3"
    assert parse_record({"text": "t", "label": True}).label == "true"
    assert parse_record({"text": "t", "label": "spam"}).format == "labelled"


def test_errors_are_line_numbered(write_jsonl):
    path = write_jsonl([{"prompt": "q", "chosen": "a", "rejected": "b"}, {"prompt": "q", "chosen": "a"}])
    examples, issues = read_examples(path, strict=False)
    assert len(examples) == 1
    assert str(issues[0]) == f"{path}:2: rejected: is missing"


def test_data_check_reports_preference_and_labelled(write_jsonl, tiny_tokenizer):
    pairs = write_jsonl([{"prompt": "q", "chosen": "a", "rejected": "a longer answer"}] * 2 + ["{"], name="p.jsonl")
    report = check_file(pairs, tiny_tokenizer)
    assert report.formats == {"preference": 2} and report.duplicates == [(2, 1)]
    assert report.token_stats["count"] == 2 and report.target_tokens > 0
    assert "preference 2" in report.render() and f"{pairs}:3: invalid JSON" in report.render()
    labelled = check_file(write_jsonl([{"text": "hello", "label": "x"}], name="l.jsonl"), tiny_tokenizer)
    assert labelled.ok and labelled.formats == {"labelled": 1}
