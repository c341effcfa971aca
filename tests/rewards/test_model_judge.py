"""The judge grader with a real tiny model: its answers are parsed into scores, and unparseable ones score 0."""

import pytest
import torch

from hone.errors import HoneError
from hone.models.generate import generate_batch
from hone.models.tiny import tiny_model
from hone.rewards import grade_outputs
from hone.rewards.label_model import parse_label
from hone.rewards.model_judge import parse_score, rubric_messages
from hone.rewards.spec import load_spec

RUBRIC = {"type": "model", "rubric": "Full marks for valid JSON.", "max_new_tokens": 6}


@pytest.mark.parametrize("answer, range_, score", [
    ("8", (0, 10), 0.8),
    ("Score: 7/10 because", (0, 10), 0.7),
    ("3.5", (1, 6), 0.5),
    ("-1", (-1, 1), 0.0),
])
def test_parse_score_maps_the_first_number_onto_0_1(answer, range_, score):
    result = parse_score(answer, *range_)
    assert result.score == pytest.approx(score) and not result.error


@pytest.mark.parametrize("answer, reason", [
    ("", "unparseable judge output ''"),
    ("great answer!", "unparseable judge output 'great answer!'"),
    ("11", "judge score 11 outside 0..10"),
])
def test_parse_score_failures(answer, reason):
    result = parse_score(answer, 0, 10)
    assert result.score == 0.0 and result.error and reason in result.reason


def test_rubric_prompt_holds_what_the_item_has():
    config = load_spec(RUBRIC)
    [system, user] = rubric_messages(config, {"output_text": "{}"}, {"prompt": "Order", "reference": "{\"a\": 1}"})
    assert system["role"] == "system"
    assert "Full marks for valid JSON." in user["content"] and "Task:\nOrder" in user["content"]
    assert "Reference answer:" in user["content"] and user["content"].endswith("number from 0 to 10.")
    [_, bare] = rubric_messages(config, {"output_text": "{}"}, {})
    assert "Task:" not in bare["content"]


def test_a_tiny_judge_that_answers_nothing_scores_zero_with_the_reason(tiny_model_dir):
    spec = load_spec({**RUBRIC, "model": str(tiny_model_dir)})
    grades = grade_outputs(spec, ['{"a": 1}', "", "not json"], [{"prompt": "p", "reference": "r"}, {}, {}])
    assert [g.score for g in grades] == [0.0, 0.0, 0.0]
    assert all(g.error and g.reason.startswith("unparseable judge output") for g in grades)


def test_a_talkative_tiny_judge_is_parsed_like_its_generated_text(tiny_tokenizer):
    model = tiny_model(tiny_tokenizer, seed=3)
    head = torch.randn(len(tiny_tokenizer), model.config.hidden_size, generator=torch.Generator().manual_seed(2))
    head[tiny_tokenizer.eos_token_id] = -5.0
    model.lm_head.weight = torch.nn.Parameter(head)  # an untied random head: the judge says something
    spec = load_spec({"type": "score_model", "max_new_tokens": 8, "input": [
        {"role": "user", "content": "Rate 0-10: {{sample.output_text}} (expected {{item.reference}})"}]})
    outputs, items = ["large pizza", "1 2 3", "x"], [{"reference": "large"}, {"reference": "3"}, {}]
    grades = grade_outputs(spec, outputs, items, judge=(model, tiny_tokenizer))
    answers = generate_batch(model, tiny_tokenizer, [[{"role": "user", "content": f"Rate 0-10: {o} (expected "
                                                      f"{i['reference']})"}] for o, i in zip(outputs[:2], items)],
                             max_new_tokens=8)
    assert any(answers)
    for got, answer in zip(grades, answers):
        assert got.details["judge_output"] == answer
        assert (got.score, got.reason) == (parse_score(answer, 0, 10).score, parse_score(answer, 0, 10).reason)
    assert grades[2].error and "item has no field 'reference'" in grades[2].reason


def test_a_missing_judge_model_is_a_clear_error(tmp_path):
    with pytest.raises(HoneError, match="unknown model"):
        grade_outputs(load_spec({**RUBRIC, "model": str(tmp_path / "nope")}), ["a"], [{}])


@pytest.mark.parametrize("answer, label, score", [
    ("Correct.", "correct", 1.0),
    ("This is INCORRECT", "incorrect", 0.0),  # whole words: "correct" inside "incorrect" does not count
    ("partly correct, mostly incorrect", "correct", 1.0),  # the label named first
])
def test_parse_label(answer, label, score):
    result = parse_label(answer, ["correct", "incorrect"], ["correct"])
    assert (result.details["label"], result.score) == (label, score)


def test_a_tiny_label_judge_naming_no_label_scores_zero(tiny_model_dir):
    spec = load_spec({"type": "label_model", "model": str(tiny_model_dir), "max_new_tokens": 4,
                      "input": [{"role": "user", "content": "Is {{sample.output_text}} right? correct/incorrect"}],
                      "labels": ["correct", "incorrect"], "passing_labels": ["correct"]})
    [result] = grade_outputs(spec, ["42"], [{}])
    assert result.score == 0.0 and "named none of ['correct', 'incorrect']" in result.reason
