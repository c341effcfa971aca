"""Specs are validated data: normalised on success, every problem named by its path on failure."""

import pytest

from hone.errors import ConfigError
from hone.rewards import GRADERS
from hone.rewards.multi import evaluate_formula, parse_formula
from hone.rewards.spec import dump_spec, load_spec


def problems(spec) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_spec(spec)
    return caught.value.issues


def test_a_spec_normalises_with_defaults_and_round_trips():
    dumped = dump_spec(load_spec('{"type": "string_check", "operation": "ilike"}'))
    assert dumped == {"name": None, "type": "string_check", "operation": "ilike", "input": "{{sample.output_text}}",
                      "reference": "{{item.reference}}", "case_sensitive": True, "strip": True}
    assert dump_spec(load_spec(dumped)) == dumped


def test_every_family_has_a_minimal_valid_spec():
    minimal = {"exact_match": {}, "labels": {}, "string_check": {}, "json": {}, "numeric": {}, "text_similarity": {},
               "python": {"function": "m:f"}, "model": {"rubric": "r"}, "score_model": {
                   "input": [{"role": "user", "content": "{{sample.output_text}}"}]},
               "label_model": {"input": [{"role": "user", "content": "x"}], "labels": ["good", "bad"],
                               "passing_labels": ["good"]},
               "multi": {"graders": {"a": {"type": "json"}}, "calculate_output": "a"}, "tool_call": {}}
    assert set(minimal) == set(GRADERS)
    for kind, options in minimal.items():
        assert load_spec({"type": kind, **options}).type == kind


def test_errors_name_the_path_inside_nested_graders():
    found = problems({"type": "multi", "calculate_output": "a + b", "graders": {
        "a": {"type": "string_check", "operation": "eqq"}, "b": {"type": "nope"}, "c": {}, "d": {"type": "numeric",
                                                                                           "abs_tolerance": -1}}})
    assert found[0].startswith("graders.a.operation: Input should be 'eq'")
    assert found[1].startswith("graders.b: unknown grader type 'nope'")
    assert found[2].startswith("graders.c: missing `type`")
    assert found[3].startswith("graders.d.abs_tolerance: Input should be greater than or equal to 0")


@pytest.mark.parametrize("spec, expected", [
    ({"type": "string_check", "input": "{{output}}"}, "input: template field {{output}} must be sample.<field>"),
    ({"type": "string_check", "operation": "regex", "reference": "("}, "reference: not a valid regular expression"),
    ({"type": "string_check", "colour": "red"}, "colour: unknown setting"),
    ({"type": "json", "json_schema": {"type": "object", "properties": {"a": {"format": "date"}}}},
     "json_schema: properties.a.format: unsupported schema keyword"),
    ({"type": "python", "function": "no_colon"}, "function: 'no_colon' is not module:function"),
    ({"type": "python", "function": "m:f", "source": "def grade(s, i): return 1"}, "source: hone does not run code"),
    ({"type": "model"}, "spec: give a rubric or input messages"),
    ({"type": "model", "rubric": "r", "range": [5, 1]}, "spec: range [5.0, 1.0] must go from low to high"),
    ({"type": "score_model", "input": [{"role": "judge", "content": "x"}]}, "input[0].role: Input should be"),
    ({"type": "multi", "graders": {"a": {"type": "json"}}, "calculate_output": "a + b"},
     "calculate_output: uses b, which is not among the graders (a)"),
    ({"type": "label_model", "input": [{"role": "user", "content": "x"}], "labels": ["a", "b"],
      "passing_labels": ["c"]}, "spec: passing_labels ['c'] are not among labels ['a', 'b']"),
    ({"type": "multi", "graders": {}, "calculate_output": "1"}, "graders: Dictionary should have at least 1 item"),
])
def test_invalid_specs(spec, expected):
    found = problems(spec)
    assert any(p.startswith(expected) for p in found), found


def test_a_spec_must_be_an_object_and_inline_json_must_parse(tmp_path):
    with pytest.raises(ConfigError, match="must be an object"):
        load_spec([1, 2])
    with pytest.raises(ConfigError, match="inline grader spec is not JSON"):
        load_spec('{"type": ')
    with pytest.raises(ConfigError, match="cannot read grader spec"):
        load_spec(str(tmp_path / "missing.yaml"))
    path = tmp_path / "spec.yaml"
    path.write_text("type: numeric\nabs_tolerance: 0.5\n")
    assert load_spec(str(path)).abs_tolerance == 0.5


@pytest.mark.parametrize("formula, construct", [
    ("__import__('os')", "calling __import__()"),
    ("__import__('os').system('true')", "calling __import__('os').system()"),
    ("a.__class__", "attribute access .__class__"),
    ("a.real + 1", "attribute access .real"),
    ("a[0]", "Subscript"),
    ("a ** 9 ** 9", "Pow"),
    ("(lambda: 1)()", "calling"),
    ("'text'", "the constant 'text'"),
    ("True + a", "the constant True"),
    ("abs(a, a)", "calling abs()"),
    ("min(a, key=a)", "calling min()"),
    ("[a for a in a]", "ListComp"),
    ("a if a else 1", "IfExp"),
    ("a; b", "not a formula"),
    ("a +", "not a formula"),
])
def test_formula_safety(formula, construct):
    with pytest.raises(ValueError) as caught:
        parse_formula(formula)
    assert construct in str(caught.value)
    found = problems({"type": "multi", "graders": {"a": {"type": "json"}}, "calculate_output": formula})
    assert found[0].startswith("calculate_output:")


def test_formula_arithmetic_by_hand():
    values = {"a": 0.5, "b": 0.25}
    assert evaluate_formula(parse_formula("0.6 * a + 0.4 * b"), values) == pytest.approx(0.4)
    assert evaluate_formula(parse_formula("-(a - b) / 2 + max(a, b, 0.1)"), values) == pytest.approx(0.375)
    assert evaluate_formula(parse_formula("min(a) + abs(b - a)"), values) == pytest.approx(0.75)


def test_the_graders_page_example_spec_is_valid():
    from pathlib import Path

    page = (Path(__file__).parents[2] / "docs" / "graders.md").read_text()
    block = page.split("```json\n")[1].split("```")[0]
    spec = load_spec(block)
    assert spec.type == "multi" and set(spec.graders) == {"fields", "schema", "bare"}
