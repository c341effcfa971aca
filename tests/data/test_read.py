import pytest

from hone.data.read import Issue, read_examples
from hone.errors import DataError

from .records import chat

GOOD = chat(("user", "What is 2+2?"), ("assistant", "4"))


def only_issue(path):
    """Read `path` leniently and return its single issue (rendered), checking the good line survived."""
    examples, issues = read_examples(path, strict=False)
    assert len(examples) == 1
    assert len(issues) == 1
    return str(issues[0])


def test_issue_prints_path_line_field_and_message():
    issue = Issue("train.jsonl", 17, "messages[2].role", "is 'bot'; expected system|user|assistant|tool")
    assert str(issue) == "train.jsonl:17: messages[2].role: is 'bot'; expected system|user|assistant|tool"
    assert str(Issue("train.jsonl", 3, "", "invalid JSON")) == "train.jsonl:3: invalid JSON"


def test_valid_file_reads_every_format_with_its_line(write_jsonl):
    path = write_jsonl([GOOD, "", {"prompt": "p", "completion": "c"}, "   ", {"text": "t"}])
    examples, issues = read_examples(path)
    assert issues == []
    assert [e.format for e in examples] == ["chat", "prompt_completion", "text"]
    assert [e.where for e in examples] == [f"{path}:1", f"{path}:3", f"{path}:5"]


def test_bad_json_names_line_and_column(write_jsonl):
    path = write_jsonl([GOOD, '{"prompt": "a" "completion": "b"}'])
    assert only_issue(path) == f"{path}:2: invalid JSON: Expecting ',' delimiter (column 16)"


def test_line_that_is_not_an_object(write_jsonl):
    path = write_jsonl([GOOD, "[1, 2]"])
    assert only_issue(path) == f"{path}:2: is an array; expected a JSON object"


def test_unknown_role(write_jsonl):
    path = write_jsonl([GOOD, chat(("user", "q"), ("assistant", "a"), ("bot", "x"))])
    assert only_issue(path) == f"{path}:2: messages[2].role: is 'bot'; expected system|user|assistant|tool"


def test_empty_assistant_content(write_jsonl):
    path = write_jsonl([GOOD, chat(("user", "q"), ("assistant", ""))])
    assert only_issue(path) == f"{path}:2: messages[1].content: is empty; assistant messages need text"


def test_missing_assistant_turn(write_jsonl):
    path = write_jsonl([GOOD, chat(("system", "s"))])
    assert only_issue(path) == f"{path}:2: messages: has no assistant message; there is nothing to train on"


def test_a_conversation_ending_with_a_user_turn_is_a_graded_prompt(write_jsonl):
    path = write_jsonl([GOOD, {"messages": [{"role": "user", "content": "q"}], "answer": 4, "label": "x"}])
    examples, issues = read_examples(path)
    assert not issues and examples[1].format == "graded_prompt"
    assert examples[1].item == {"answer": 4, "label": "x"}  # every other key is the grader's, even `label`


@pytest.mark.parametrize(
    "record, expected",
    [
        (chat(("user", 42), ("assistant", "a")), "messages[0].content: is a number; expected a string or an array of content parts"),
        ({"messages": "hi"}, "messages: is a string; expected an array of messages"),
        ({"prompt": ["a"], "completion": "b"}, "prompt: is an array; expected a string"),
        ({"messages": [GOOD["messages"][0], None]}, "messages[1]: is null; expected an object with role and content"),
    ],
)
def test_wrong_types_name_field_and_type_found(write_jsonl, record, expected):
    path = write_jsonl([GOOD, record])
    assert only_issue(path) == f"{path}:2: {expected}"


@pytest.mark.parametrize(
    "weight, role, expected",
    [
        (2, "assistant", "messages[1].weight: is 2; expected 0 or 1"),
        ("1", "assistant", 'messages[1].weight: is "1"; expected 0 or 1'),
        (1, "user", "messages[1].weight: is set on a user message; only assistant messages take a weight"),
    ],
)
def test_bad_weight(write_jsonl, weight, role, expected):
    record = {"messages": [{"role": "user", "content": "q"}, {"role": role, "content": "a", "weight": weight}]}
    if role == "user":
        record["messages"].append({"role": "assistant", "content": "a"})
    path = write_jsonl([GOOD, record])
    assert only_issue(path) == f"{path}:2: {expected}"


def test_non_utf8_bytes_give_the_byte_offset(write_jsonl):
    path = write_jsonl([GOOD, b'{"text": "caf\xe9"}'])
    assert only_issue(path) == f"{path}:2: invalid UTF-8 byte 0xe9 at byte 14 of the line; save the file as UTF-8"


def test_utf8_bom_on_the_first_line_is_accepted(write_jsonl):
    path = write_jsonl([b'\xef\xbb\xbf{"text": "hello"}'])
    examples, _ = read_examples(path)
    assert examples[0].text == "hello"


def test_empty_file_is_a_data_error(write_jsonl):
    path = write_jsonl(["", "  "])
    with pytest.raises(DataError) as caught:
        read_examples(path, strict=False)
    assert caught.value.where == str(path)
    assert "no records" in caught.value.what


@pytest.mark.parametrize(
    "record, expected",
    [
        ({"prompt": "a", "completion": "b", "messages": []}, "keys completion, messages, prompt mix formats chat and prompt_completion"),
        ({"question": "q", "answer": "a"}, "unknown format (keys: answer, question); expected one of: chat {"),
    ],
)
def test_ambiguous_or_unknown_format(write_jsonl, record, expected):
    path = write_jsonl([GOOD, record])
    assert only_issue(path).startswith(f"{path}:2: {expected}")


def test_oversized_file_is_a_data_error(write_jsonl):
    path = write_jsonl([GOOD] * 10)
    size = path.stat().st_size
    with pytest.raises(DataError) as caught:
        read_examples(path, max_bytes=size - 1)
    assert caught.value.where == str(path)
    assert f"file is {size:,} bytes, over the limit of {size - 1:,}" == caught.value.what
    examples, _ = read_examples(path, max_bytes=size)
    assert len(examples) == 10


def test_missing_file_is_a_data_error(tmp_path):
    path = tmp_path / "nope.jsonl"
    with pytest.raises(DataError) as caught:
        read_examples(path)
    assert caught.value.where == str(path)
    assert caught.value.what == "file not found"


def test_strict_raises_once_listing_every_issue(write_jsonl):
    path = write_jsonl([GOOD, "{", GOOD, chat(("system", "q")), "7"])
    with pytest.raises(DataError) as caught:
        read_examples(path)
    error = caught.value
    assert error.what == "3 of 5 records are invalid"
    assert [issue.line for issue in error.issues] == [2, 4, 5]
    text = str(error)
    assert f"{path}:2: invalid JSON" in text
    assert f"{path}:4: messages: has no assistant message" in text
    assert f"{path}:5: is a number; expected a JSON object" in text
    assert error.hint


def test_lenient_returns_valid_examples_and_issues(write_jsonl):
    path = write_jsonl([GOOD, "{", {"text": "t"}])
    examples, issues = read_examples(path, strict=False)
    assert [e.where for e in examples] == [f"{path}:1", f"{path}:3"]
    assert [(i.line, i.field) for i in issues] == [(2, "")]


def test_lenient_still_raises_when_no_record_is_valid(write_jsonl):
    path = write_jsonl(["{", "[]"])
    with pytest.raises(DataError) as caught:
        read_examples(path, strict=False)
    assert caught.value.what == "2 of 2 records are invalid"
    assert len(caught.value.issues) == 2
