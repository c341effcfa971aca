"""The tool_call grader on hand-made outputs: functions and arguments, order, missing and extra calls."""

import json

import pytest

from hone.rewards import grade_outputs
from hone.rewards.spec import load_spec


def call(name, arguments):
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


WEATHER = call("get_weather", {"city": "Paris", "unit": "c"})
TIME = call("get_time", {"city": "Paris"})


def grade(output, reference, **spec):
    [result] = grade_outputs(load_spec({"type": "tool_call", **spec}), [output], [{"reference": reference}])
    return result


@pytest.mark.parametrize("output, reference, score, names", [
    (WEATHER, WEATHER, 1.0, 1.0),
    ('Let me look.\n<tool_call>{"name": "get_weather", "arguments": {"unit": "c", "city": "Paris"}}</tool_call>',
     WEATHER, 1.0, 1.0),  # text beside the call and key order do not matter
    (call("get_weather", {"city": "Rome", "unit": "c"}), WEATHER, 0.0, 1.0),  # right function, wrong arguments
    (call("get_news", {"city": "Paris", "unit": "c"}), WEATHER, 0.0, 0.0),
    (f"{TIME}\n{WEATHER}", f"{WEATHER}\n{TIME}", 1.0, 1.0),  # parallel calls in any order
    (WEATHER, f"{WEATHER}\n{TIME}", 0.5, 0.5),  # a call missing
    (f"{WEATHER}\n{TIME}", WEATHER, 0.5, 0.5),  # an extra call
    ("It is sunny.", WEATHER, 0.0, 0.0),  # no call made
    ("<tool_call>{not json}</tool_call>", WEATHER, 0.0, 0.0),
    ("It is sunny.", "It is 18C and sunny.", 1.0, 1.0),  # no call expected, none made
    (WEATHER, "It is 18C and sunny.", 0.0, 0.0),
])
def test_call_accuracy(output, reference, score, names):
    result = grade(output, reference)
    assert result.score == score
    assert result.details["function_accuracy"] == names
    assert result.details["exact_match"] == float(score == 1.0)


def test_exact_scoring_gives_no_partial_credit():
    assert grade(WEATHER, f"{WEATHER}\n{TIME}", score="exact").score == 0.0
    assert grade(f"{TIME}\n{WEATHER}", f"{WEATHER}\n{TIME}", score="exact").score == 1.0


def test_reason_counts_the_calls():
    assert grade(f"{WEATHER}\n{TIME}", WEATHER).reason == "1 of 1 expected calls right, 2 made"
