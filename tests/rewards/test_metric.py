"""A metric is a built-in grader: `metric: X` and `grader: {type: X}` score the same outputs identically,
on the one path every evaluation takes; a metric that needs settings is refused up front."""

import json

import pytest

from hone.config.load import load_config
from hone.errors import ConfigError
from hone.rewards.batch import task_item
from hone.rewards.metric import REGISTERED, eval_grader, metric_names, score_outputs

REF = '{"size": "large", "toppings": ["ham", "olives"], "delivery": true}'
OUTPUTS = [REF, '{"size": "small", "toppings": ["ham", "olives"], "delivery": true}', "nope", " sports, tech.\n",
           '```json\n["Sports"]\n```', "12", "The answer is 12."]
REFERENCES = [REF, REF, REF, "sports", "sports, tech", "12", "12"]
ITEMS = [task_item([{"role": "user", "content": "q"}], r, f"f:{i}") for i, r in enumerate(REFERENCES)]


def scored(grader):
    per_item, summary, grades = score_outputs(grader, OUTPUTS, ITEMS)
    return per_item, summary, [g.to_dict() for g in grades]


@pytest.mark.parametrize("name", [n for n in metric_names() if n not in REGISTERED])
def test_a_metric_name_and_its_grader_spec_score_identically(name):
    by_metric = load_config({"eval": {"metric": name}}).eval
    by_grader = load_config({"eval": {"grader": {"type": name}}}).eval
    assert by_grader.grader is not None and by_metric.grader is None
    assert scored(eval_grader(by_metric.metric, by_metric.grader)) == scored(eval_grader(by_grader.metric,
                                                                                          by_grader.grader))


def test_the_builtin_metrics_report_their_own_parts_by_hand():
    _, summary, _ = score_outputs(eval_grader("json"), OUTPUTS[:3], ITEMS[:3])
    # field accuracies 1, 2/3, 0; valid 1, 1, 0; exact 1, 0, 0
    assert summary == pytest.approx({"json_valid": 2 / 3, "field_accuracy": 5 / 9, "exact_match": 1 / 3, "n": 3})
    _, summary, _ = score_outputs(eval_grader("labels"), OUTPUTS[3:5], ITEMS[3:5])
    # tp 1 + 1, fp 1 (tech), fn 1 (tech); exact sets: neither
    assert summary == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "exact_match": 0.0, "n": 2})
    per_item, summary, _ = score_outputs(eval_grader("exact_match"), OUTPUTS[5:], ITEMS[5:])
    assert per_item == [{"exact_match": 1.0}, {"exact_match": 0.0}] and summary == {"exact_match": 0.5, "n": 2}


def test_a_grader_with_a_schema_also_reports_its_score():
    schema = {"type": "object", "required": ["size", "crust"]}
    per_item, summary, _ = score_outputs(eval_grader(grader={"type": "json", "json_schema": schema}),
                                         OUTPUTS[:2], ITEMS[:2])
    assert summary == {"grader_score": 0.0, "grader_errors": 1.0, "json_valid": 1.0, "field_accuracy": 0.0,
                       "exact_match": 0.0, "n": 2}  # valid JSON, but no `crust`: the schema fails both
    assert per_item[0]["grader_score"] == 0.0


def test_a_metric_that_needs_settings_or_does_not_exist_fails_when_the_config_loads():
    with pytest.raises(ConfigError) as caught:
        load_config({"eval": {"metric": "python"}})
    assert "needs settings" in json.dumps(caught.value.issues) and "eval.grader" in json.dumps(caught.value.issues)
    with pytest.raises(ConfigError) as caught:
        load_config({"eval": {"metric": "bleu"}})
    assert all(name in json.dumps(caught.value.issues) for name in ("exact_match", "json", "labels"))


def test_hone_evaluate_by_metric_or_by_spec_gives_the_same_numbers(tmp_path, tiny_model_dir):
    from hone.api import evaluate
    from hone.examples import pizza

    _, heldout = pizza.write_dataset(tmp_path, train=2, heldout=3)
    options = {"model": str(tiny_model_dir), "max_new_tokens": 4, "progress": False}
    by_metric = evaluate(heldout, metric="json", **options)
    by_grader = evaluate(heldout, grader={"type": "json"}, **options)
    assert set(by_metric.metrics) == {"json_valid", "field_accuracy", "exact_match", "n"}
    assert by_metric.metrics == by_grader.metrics and by_metric.predictions == by_grader.predictions
    assert [g.score for g in by_metric.grades] == [g.score for g in by_grader.grades]
