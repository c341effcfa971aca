"""Each grader family on a table of cases, malformed model output included: a score and a reason, never a crash."""

import json
from pathlib import Path

import pytest

from hone.rewards import grade_outputs
from hone.rewards.spec import load_spec

USER = Path(__file__).parent / "user_graders.py"
PIZZA = {"size": "large", "toppings": ["ham", "olives"], "delivery": True}


def run(spec: dict, output, item: dict):
    [result] = grade_outputs(load_spec(spec), [output], [item])
    assert 0.0 <= result.score <= 1.0
    assert result.reason
    return result


@pytest.mark.parametrize("spec, output, reference, expected", [
    ({"type": "string_check"}, "  Paris\n", "Paris", 1.0),
    ({"type": "string_check"}, "paris", "Paris", 0.0),
    ({"type": "string_check", "case_sensitive": False}, "paris", "Paris", 1.0),
    ({"type": "string_check", "operation": "ne"}, "Rome", "Paris", 1.0),
    ({"type": "string_check", "operation": "contains"}, "It is Paris.", "Paris", 1.0),
    ({"type": "string_check", "operation": "like"}, "It is paris.", "Paris", 0.0),
    ({"type": "string_check", "operation": "ilike"}, "It is paris.", "Paris", 1.0),
    ({"type": "string_check", "operation": "regex"}, "answer: 42", r"answer:\s*\d+$", 1.0),
    ({"type": "string_check", "operation": "regex", "case_sensitive": False}, "ANSWER: 7", r"^answer", 1.0),
    ({"type": "string_check"}, "", "Paris", 0.0),
])
def test_string_check(spec, output, reference, expected):
    assert run(spec, output, {"reference": reference}).score == expected


def test_string_check_bad_regex_from_an_item_scores_zero_with_the_reason():
    result = run({"type": "string_check", "operation": "regex"}, "x", {"reference": "(unclosed"})
    assert result.score == 0.0 and result.error and "regular expression" in result.reason


def test_a_template_naming_a_missing_field_scores_zero_and_says_which():
    result = run({"type": "string_check", "reference": "{{item.answer.text}}"}, "x", {"answer": {}})
    assert result.error and "item.answer has no field 'text'" in result.reason


def test_templates_reach_nested_fields_and_list_items():
    spec = {"type": "string_check", "input": "{{sample.output_json.city}}", "reference": "{{item.answers.1}}"}
    assert run(spec, '{"city": "Lyon"}', {"answers": ["Paris", "Lyon"]}).score == 1.0


@pytest.mark.parametrize("output, score, reason", [
    (json.dumps(PIZZA), 1.0, "100%"),
    ('```json\n{"size": "large", "toppings": ["olives"], "delivery": true}\n```', 2 / 3, "67%"),
    ('{"size": "large",', 0.0, "invalid JSON"),
    ("", 0.0, "empty output"),
    ("Sure! " + json.dumps(PIZZA), 0.0, "invalid JSON"),
    ('["large"]', 0.0, "0%"),
])
def test_json_fields_with_partial_credit(output, score, reason):
    result = run({"type": "json"}, output, {"reference": json.dumps(PIZZA)})
    assert result.score == pytest.approx(score) and reason in result.reason


def test_json_reference_may_be_an_object_in_the_item_or_literal_in_the_spec():
    output = json.dumps({**PIZZA, "size": "small"})
    assert run({"type": "json"}, output, {"reference": PIZZA}).score == pytest.approx(2 / 3)
    assert run({"type": "json", "reference": PIZZA, "score": "exact"}, output, {}).score == 0.0
    assert run({"type": "json", "reference": PIZZA, "score": "exact"}, json.dumps(PIZZA), {}).score == 1.0


def test_json_reference_that_is_not_json_is_reported_not_raised():
    result = run({"type": "json"}, "{}", {"reference": "not json"})
    assert result.error and "reference is not valid JSON" in result.reason


SCHEMA = {"type": "object", "required": ["size", "quantity"], "additionalProperties": False,
          "properties": {"size": {"enum": ["small", "large"]}, "quantity": {"type": "integer", "minimum": 1},
                         "toppings": {"type": "array", "items": {"type": "string"}, "maxItems": 3}}}


@pytest.mark.parametrize("value, problem", [
    ({"size": "large", "quantity": 2}, None),
    ({"size": "large", "quantity": 2.0, "toppings": ["ham"]}, None),
    ({"size": "huge", "quantity": 2}, "$.size: 'huge' is not one of"),
    ({"size": "large"}, "missing required field 'quantity'"),
    ({"size": "large", "quantity": 0}, "$.quantity: 0 breaks minimum 1"),
    ({"size": "large", "quantity": True}, "$.quantity: expected integer"),
    ({"size": "large", "quantity": 1, "note": "x"}, "unexpected field 'note'"),
    ({"size": "large", "quantity": 1, "toppings": ["a", 2]}, "$.toppings[1]: expected string"),
    ([1], "$: expected object"),
])
def test_json_schema_subset(value, problem):
    result = run({"type": "json", "reference": None, "json_schema": SCHEMA}, json.dumps(value), {})
    if problem is None:
        assert result.score == 1.0 and not result.error
    else:
        assert result.score == 0.0 and problem in result.reason


@pytest.mark.parametrize("spec, output, reference, expected", [
    ({}, "The total is 1,234.50 dollars.", "1234.5", 1.0),
    ({}, "3 pizzas at 4 each makes 12", "12", 1.0),
    ({"extract": "first"}, "3 pizzas at 4 each makes 12", "12", 0.0),
    ({"extract": "only"}, "3 pizzas at 4 each makes 12", "12", 0.0),
    ({"abs_tolerance": 0.5}, "about 9.6", "10", 1.0),
    ({"abs_tolerance": 0.3}, "about 9.6", "10", 0.0),
    ({"rel_tolerance": 0.05}, "-104", "-100", 1.0),
    ({}, "1e3", "1000", 1.0),
    ({}, "no idea", "12", 0.0),
    ({}, "", "12", 0.0),
])
def test_numeric(spec, output, reference, expected):
    assert run({"type": "numeric", **spec}, output, {"reference": reference}).score == expected


def test_numeric_reference_without_exactly_one_number_is_reported():
    assert "reference holds 0 numbers" in run({"type": "numeric"}, "1", {"reference": "n/a"}).reason


def test_text_similarity_metrics_and_threshold():
    item = {"reference": "the cat is on the mat"}
    spec = {"type": "text_similarity", "evaluation_metric": "rouge_l", "pass_threshold": 0.8}
    result = run(spec, "the cat sat on the mat", item)
    assert result.score == pytest.approx(5 / 6) and result.details["passed"] is True
    assert run({**spec, "evaluation_metric": "bleu"}, "the cat is on the mat", item).score == pytest.approx(1.0)
    assert run({"type": "text_similarity"}, "", item).score == 0.0
    assert run({"type": "text_similarity", "case_sensitive": False}, "THE CAT IS ON THE MAT", item).score == 1.0


def python_spec(function: str, timeout: float = 5.0) -> dict:
    return {"type": "python", "function": f"{USER}:{function}", "timeout": timeout}


def test_python_grader_scores_a_batch_in_one_process():
    grades = grade_outputs(load_spec(python_spec("length_ratio")), ["ab", "abcd", "abcdefgh"], [{"reference": "abcd"}] * 3)
    assert [g.score for g in grades] == [0.5, 1.0, 1.0]
    assert "clipped from 2" in grades[2].reason and grades[2].details["raw_score"] == 2.0


@pytest.mark.parametrize("function, reason", [
    ("raises", "ValueError: the grader is broken (line"),
    ("not_a_number", "returned str, expected a number"),
    ("missing_function", "cannot load"),
])
def test_python_grader_failures_score_zero_with_the_reason(function, reason):
    grades = grade_outputs(load_spec(python_spec(function)), ["a", "b"], [{}, {}])
    assert [g.score for g in grades] == [0.0, 0.0]
    assert all(g.error and reason in g.reason for g in grades)


def test_python_grader_that_prints_still_grades():
    assert [g.score for g in grade_outputs(load_spec(python_spec("chatty")), ["a"], [{}])] == [0.5]


def test_python_grader_that_hangs_or_exits_is_cut_off_and_the_batch_goes_on():
    grades = grade_outputs(load_spec(python_spec("hangs", timeout=1.0)), ["ok", "hang", "ok"], [{}] * 3)
    assert [g.score for g in grades] == [1.0, 0.0, 1.0]
    assert "timed out after 1 s" in grades[1].reason
    grades = grade_outputs(load_spec(python_spec("exits")), ["exit", "ok"], [{}] * 2)
    assert [g.score for g in grades] == [0.0, 1.0]
    assert "exited (code 3)" in grades[0].reason


def test_python_grader_imports_module_colon_function(monkeypatch):
    monkeypatch.chdir(Path(__file__).parents[2])  # the repo root, where `tests` is a package
    grades = grade_outputs(load_spec({"type": "python", "function": "tests.rewards.user_graders:chatty"}), ["a"], [{}])
    assert grades[0].score == 0.5, grades[0].reason


def test_multi_combines_named_graders_by_formula():
    spec = {"type": "multi", "calculate_output": "0.25 * valid + 0.75 * fields",
            "graders": {"valid": {"type": "json", "score": "valid"}, "fields": {"type": "json"}}}
    outputs = [json.dumps(PIZZA), json.dumps({"size": "large"}), "oops"]
    grades = grade_outputs(load_spec(spec), outputs, [{"reference": json.dumps(PIZZA)}] * 3)
    assert [g.score for g in grades] == pytest.approx([1.0, 0.25 + 0.75 / 3, 0.0])
    assert grades[2].details["valid"]["error"] is True


def test_multi_division_by_zero_scores_zero_and_results_are_clipped():
    spec = {"type": "multi", "calculate_output": "1 / a", "graders": {"a": {"type": "string_check"}}}
    [zero] = grade_outputs(load_spec(spec), ["x"], [{"reference": "y"}])
    assert zero.score == 0.0 and "division by zero" in zero.reason
    spec = {**spec, "calculate_output": "max(a, 0.5) * 3 - abs(-1)"}
    assert grade_outputs(load_spec(spec), ["x"], [{"reference": "x"}])[0].score == 1.0  # 2, clipped
    assert grade_outputs(load_spec(spec), ["x"], [{"reference": "y"}])[0].score == 0.5  # 0.5 * 3 - 1


def test_outputs_and_items_must_pair_up():
    from hone.errors import HoneError

    with pytest.raises(HoneError, match="2 outputs for 1 items"):
        grade_outputs(load_spec({"type": "string_check"}), ["a", "b"], [{}])
