import pytest

from hone.errors import HoneError
from hone.evaluate.metrics import METRICS, exact_match, json_fields, score

REF = '{"size": "large", "toppings": ["ham", "olives"], "delivery": true}'


def test_exact_match_compares_stripped_strings():
    assert exact_match("  Paris\n", "Paris") == {"exact_match": 1.0}
    assert exact_match("paris", "Paris") == {"exact_match": 0.0}


def test_json_fields_perfect_prediction():
    assert json_fields(REF, REF) == {"json_valid": 1.0, "field_accuracy": 1.0, "exact_match": 1.0}


def test_json_fields_two_of_three_fields_right():
    prediction = '{"size": "large", "toppings": ["ham"], "delivery": true}'
    result = json_fields(prediction, REF)
    assert result["json_valid"] == 1.0
    assert result["field_accuracy"] == pytest.approx(0.6667, abs=1e-4)
    assert result["exact_match"] == 0.0


def test_json_fields_scalar_lists_are_multisets():
    prediction = '{"delivery": true, "toppings": ["olives", "ham"], "size": "large"}'
    assert json_fields(prediction, REF)["exact_match"] == 1.0
    # a multiset: a repeated item is not the same list
    assert json_fields('{"t": ["a", "a", "b"]}', '{"t": ["a", "b", "b"]}')["field_accuracy"] == 0.0


def test_json_fields_missing_field_is_wrong_and_extra_field_is_free():
    assert json_fields('{"size": "large", "delivery": true}', REF)["field_accuracy"] == pytest.approx(2 / 3)
    extra = '{"size": "large", "toppings": ["ham", "olives"], "delivery": true, "note": "hi"}'
    result = json_fields(extra, REF)
    assert result["field_accuracy"] == 1.0
    assert result["exact_match"] == 0.0  # the parsed objects differ


def test_json_fields_flattens_nested_objects_to_paths():
    reference = '{"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2]}'  # fields a.b, a.c.d, e
    prediction = '{"a": {"b": 1, "c": {"d": "y"}}, "e": [2, 1]}'
    assert json_fields(prediction, reference)["field_accuracy"] == pytest.approx(2 / 3)
    # a nested object where a scalar is expected gets none of its paths right
    assert json_fields('{"a": 5, "e": [1, 2]}', reference)["field_accuracy"] == pytest.approx(1 / 3)


def test_json_fields_accepts_a_json_fence_and_nothing_else():
    assert json_fields(f"```json\n{REF}\n```", REF)["field_accuracy"] == 1.0
    assert json_fields(f"  ```\n{REF}\n```\n", REF)["field_accuracy"] == 1.0
    chatter = f"Here is the JSON: {REF}"
    assert json_fields(chatter, REF) == {"json_valid": 0.0, "field_accuracy": 0.0, "exact_match": 0.0}
    assert json_fields(f"```json\n{REF}\n```\nHope that helps!", REF)["json_valid"] == 0.0


def test_json_fields_invalid_json_or_non_object_scores_zero():
    assert json_fields('{"size": "large",', REF) == {"json_valid": 0.0, "field_accuracy": 0.0, "exact_match": 0.0}
    assert json_fields("", REF)["json_valid"] == 0.0
    assert json_fields('["large"]', REF)["field_accuracy"] == 0.0


def test_json_fields_numbers_by_value_but_bool_is_not_int():
    assert json_fields('{"q": 1.0}', '{"q": 1}')["exact_match"] == 1.0
    assert json_fields('{"q": true}', '{"q": 1}')["field_accuracy"] == 0.0
    assert json_fields('{"d": 1}', '{"d": true}')["field_accuracy"] == 0.0
    assert json_fields('{"d": 0}', '{"d": false}')["field_accuracy"] == 0.0
    assert json_fields('{"t": [true]}', '{"t": [1]}')["field_accuracy"] == 0.0


def test_json_fields_null_and_strings_compare_by_type():
    assert json_fields('{"a": null, "b": "1"}', '{"a": null, "b": 1}')["field_accuracy"] == 0.5


def test_score_averages_each_key_and_counts_examples():
    predictions = [REF, '{"size": "small", "toppings": ["ham", "olives"], "delivery": true}', "nope"]
    result = score("json", predictions, [REF] * 3)
    # field accuracies 1, 2/3, 0 -> 5/9; valid 1, 1, 0; exact 1, 0, 0
    assert result["field_accuracy"] == pytest.approx(5 / 9)
    assert result["json_valid"] == pytest.approx(2 / 3)
    assert result["exact_match"] == pytest.approx(1 / 3)
    assert result["n"] == 3
    assert score("exact_match", ["a", "b "], ["a", "a"]) == {"exact_match": 0.5, "n": 2}


def test_score_unknown_metric_names_the_known_ones():
    with pytest.raises(HoneError) as caught:
        score("bleu", ["a"], ["a"])
    assert "bleu" in str(caught.value)
    for name in METRICS:
        assert name in caught.value.hint


def test_score_needs_one_prediction_per_reference():
    with pytest.raises(HoneError):
        score("exact_match", ["a"], ["a", "b"])
