"""A grader's errors during GRPO: checked on training items first, counted over a window, never silent."""

import pytest

from hone.data.prompts import PromptUnit
from hone.errors import GraderError
from hone.objectives.grpo import Config
from hone.objectives.grpo_rewards import GraderReward

# string_check reads item.answer: an item without one cannot be graded (a template error, score 0)
GRADER = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
          "reference": "{{item.answer}}", "operation": "eq"}


def prompts(answers: list) -> list[PromptUnit]:
    return [PromptUnit([], [], {} if a is None else {"answer": a}, f"train.jsonl:{i + 1}") for i, a in enumerate(answers)]


def test_a_grader_that_fails_on_the_first_training_items_stops_before_training():
    reward = GraderReward(Config(grader=GRADER))
    reward.check(prompts(["a", "b", "c", None]))  # the fourth item is not among those checked
    with pytest.raises(GraderError) as caught:
        reward.check(prompts(["a", None, "c"]))
    assert "string_check grader 'exact' failed on 1 of the first 3 training items" in str(caught.value)
    assert caught.value.issues == ["train.jsonl:2: item has no field 'answer' (template {{item.answer}})"]


def test_grader_errors_are_returned_and_too_many_in_a_window_stop_the_run():
    reward = GraderReward(Config(grader=GRADER, grader_error_window=8, max_grader_error_rate=0.25))
    scores, failures = reward(["a", "x", "b"], prompts(["a", None, "c"]))
    assert scores == [1.0, 0.0, 0.0]
    assert failures == [{"where": "train.jsonl:2", "message": "item has no field 'answer' (template {{item.answer}})"}]
    reward(["a"] * 4, prompts(["a", "a", None, "a"]))  # 2 errors of the last 7: at most 0.25 of 8
    reward(["a"] * 4, prompts(["a"] * 4))  # the first error left the window
    with pytest.raises(GraderError, match=r"failed on 3 of the last 8 answers, more than "
                                          r"objective.max_grader_error_rate=0.25 of a window of 8"):
        reward(["a"] * 2, prompts([None, None]))
