import json

from hone.data.formats import parse_record
from hone.data.report import check_file, length_stats
from hone.data.template import tokenize_example

from .records import chat

PIZZA = chat(("user", "Order a large pizza"), ("assistant", "Done."))
LONG = {"text": "The quick brown fox jumps over the lazy dog. " * 20}
LONG_PROMPT = chat(("user", "What is the capital of France? " * 20), ("assistant", "Paris."))


def test_report_counts_formats_duplicates_issues_and_truncations(write_jsonl, tiny_tokenizer):
    valid = {
        1: PIZZA,
        2: {"prompt": "Capital of France?", "completion": "Paris."},
        4: chat(("user", " Order a  large pizza "), ("assistant", "Done.")),  # repeats line 1
        6: LONG,
        7: {"instruction": "Capital of France?", "output": "Paris."},  # repeats line 2
        8: LONG_PROMPT,
    }
    lines = [valid.get(n, "{oops" if n == 3 else "") for n in range(1, 9)]
    lengths = {n: len(tokenize_example(parse_record(r), tiny_tokenizer).input_ids) for n, r in valid.items()}
    max_length = max(lengths[n] for n in (1, 2, 4, 7))
    assert lengths[6] > max_length and lengths[8] > max_length

    report = check_file(write_jsonl(lines), tiny_tokenizer, max_length=max_length)
    assert (report.lines, report.valid) == (7, 6)
    assert report.formats == {"chat": 3, "prompt_completion": 1, "text": 1, "alpaca": 1}
    assert [(i.line, i.message.split(":")[0]) for i in report.issues] == [(3, "invalid JSON")]
    assert report.duplicates == [(4, 1), (7, 2)]
    assert not report.ok
    assert report.truncated == [(6, lengths[6]), (8, lengths[8])]
    assert report.untrainable == [8]  # the reply of line 8 lies past max_length
    assert report.token_stats["count"] == 6
    assert report.token_stats["max"] == max(lengths.values()) and report.token_stats["min"] == min(lengths.values())
    assert report.token_stats["mean"] == sum(lengths.values()) / 6
    # Targets counted as trained: the replies, plus the text tokens that survive truncation.
    expected_targets = sum(
        sum(label != -100 for label in tokenize_example(parse_record(r), tiny_tokenizer, max_length=max_length).labels)
        for r in valid.values()
    )
    assert report.target_tokens == expected_targets
    text = report.render()
    assert f"truncated to max_length={max_length}: 2 (line 6 ({lengths[6]} tokens), line 8" in text
    assert "no target tokens left after truncation: 1 (lines 8)" in text


def test_render_lists_summary_and_every_issue(write_jsonl):
    path = write_jsonl([PIZZA, PIZZA, chat(("user", "q"), ("bot", "x")), "[]"])
    text = check_file(path).render()
    assert text.splitlines()[0] == f"{path}: 4 records, 2 valid, 2 invalid"
    assert "formats: chat 2" in text
    assert "duplicates: 1 (line 2 repeats line 1)" in text
    assert f"{path}:3: messages[1].role: is 'bot'; expected system|user|assistant" in text
    assert f"{path}:4: is an array; expected a JSON object" in text
    assert text.splitlines()[-1] == "not ok"
    assert "tokens per example" not in text  # no tokenizer, no token statistics


def test_clean_file_is_ok_and_serializes_to_json(write_jsonl, tiny_tokenizer):
    path = write_jsonl([PIZZA, {"text": "hello"}])
    report = check_file(path, tiny_tokenizer)
    assert report.ok
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is True
    assert data["valid"] == 2 and data["issues"] == [] and data["max_length"] == 512
    assert set(data["token_stats"]) == {"count", "min", "mean", "p50", "p95", "max"}
    assert "ok" == report.render().splitlines()[-1]


def test_missing_and_empty_files_become_issues_not_exceptions(tmp_path, write_jsonl):
    missing = check_file(tmp_path / "absent.jsonl")
    assert not missing.ok
    assert [str(i) for i in missing.issues] == [f"{tmp_path / 'absent.jsonl'}: file not found"]
    empty = check_file(write_jsonl(["", ""], name="empty.jsonl"))
    assert not empty.ok and empty.lines == 0
    assert "no records" in empty.issues[0].message
    assert "no records" in empty.render()


def test_template_failures_become_issues_on_their_line(write_jsonl, tiny_tokenizer):
    import copy

    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = None
    path = write_jsonl([{"text": "fine"}, PIZZA])
    report = check_file(path, tokenizer)
    assert report.valid == 1
    assert [(i.line, "no chat template" in i.message) for i in report.issues] == [(2, True)]


def test_length_stats_use_nearest_rank_percentiles():
    stats = length_stats(list(range(1, 101)))
    assert stats == {"count": 100, "min": 1, "mean": 50.5, "p50": 50, "p95": 95, "max": 100}
    assert length_stats([7]) == {"count": 1, "min": 7, "mean": 7.0, "p50": 7, "p95": 7, "max": 7}
    assert length_stats([]) is None
