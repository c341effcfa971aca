"""Label metrics, perplexity and the forgetting suite's graders against hand-computed values."""

import math

import numpy as np
import pytest

from hone.data.shipped import QUESTION_PARTS, load_general_text, load_questions
from hone.evaluate.forgetting import check_answer, forgetting_table
from hone.rewards.labels import labels
from hone.rewards.metric import register_metric, score


def test_labels_micro_precision_recall_f1_by_hand():
    predictions = ["sports, politics", '["Sports"]', "weather"]
    references = ["sports", "sports, tech", "weather."]
    # tp: 1 + 1 + 1 = 3; fp: 1 (politics) ; fn: 1 (tech)
    result = score("labels", predictions, references)
    assert result["precision"] == pytest.approx(3 / 4)
    assert result["recall"] == pytest.approx(3 / 4)
    assert result["f1"] == pytest.approx(3 / 4)
    assert result["exact_match"] == pytest.approx(1 / 3)
    assert labels("a, b", "a")["f1"] == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert labels("", "")["f1"] == 1.0 and labels("x", "")["f1"] == 0.0


def test_a_registered_grader_is_a_metric():
    register_metric("starts_same", lambda p, r: {"starts_same": float(p[:1] == r[:1])}, primary="starts_same")
    assert score("starts_same", ["ab", "xb"], ["ac", "ac"]) == {"starts_same": 0.5, "n": 2}


def test_reference_perplexity_equals_a_plain_forward(tiny_tokenizer):
    import torch

    from hone.data.template import tokenize_example
    from hone.evaluate.perplexity import example_nll, perplexity, reference_example
    from hone.models.tiny import tiny_model

    model = tiny_model(tiny_tokenizer, seed=3)
    examples = [reference_example([{"role": "user", "content": q}], a)
                for q, a in (("What is the capital of France?", "Paris."), ("Order a large pizza", '{"size": "large"}'))]
    got = example_nll(model, tiny_tokenizer, examples, batch_size=2)
    for example, (nll, n) in zip(examples, got):
        t = tokenize_example(example, tiny_tokenizer)
        ids = torch.tensor([t.input_ids])
        with torch.no_grad():
            logp = model(ids).logits[0, :-1].log_softmax(-1)
        targets = torch.tensor(t.labels[1:])
        keep = targets != -100
        expected = -logp[keep].gather(1, targets[keep][:, None]).sum()
        assert n == int(keep.sum()) > 0
        assert nll == pytest.approx(float(expected), rel=1e-4)
    assert perplexity(got) == pytest.approx(math.exp(sum(s for s, _ in got) / sum(n for _, n in got)))


@pytest.mark.parametrize("check, answer, passed", [
    ({"type": "number", "value": 42}, "The answer is 42.", True),
    ({"type": "number", "value": 42}, "4 2", False),
    ({"type": "number", "value": 6, "ignore": [2, 3]}, "2 * 3 = 6", True),
    ({"type": "number", "value": 47, "ignore": [40, 7]}, "the sum of 40 and 7 is", False),
    ({"type": "contains", "any": ["Paris"]}, "It is paris.", True),
    ({"type": "contains", "any": ["Au"]}, "Gaul", False),
    ({"type": "word_count", "n": 3}, "Blue, deep, endless.", True),
    ({"type": "word_count", "n": 3}, "Blue and deep and endless", False),
    ({"type": "uppercase"}, "HELLO THERE!", True),
    ({"type": "lowercase"}, "Rain falls.", False),
    ({"type": "starts_with", "prefix": "Yes"}, "yes, it is", True),
    ({"type": "ends_with", "suffix": "!"}, "Summer!", True),
    ({"type": "lines", "n": 3}, "red\ngreen\n\nblue", True),
    ({"type": "json_keys", "keys": ["name", "age"]}, '{"name": "Ann", "age": 30}', True),
    ({"type": "json_keys", "keys": ["name", "age"]}, '{"name": "Ann"}', False),
    ({"type": "one_of", "options": ["no"]}, "No.", True),
    ([{"type": "excludes", "text": ","}, {"type": "min_words", "n": 3}], "Dogs bark at night", True),
    ([{"type": "excludes", "text": ","}, {"type": "min_words", "n": 3}], "Dogs, cats", False),
])
def test_question_checks_by_hand(check, answer, passed):
    assert check_answer(check, answer) is passed


def test_the_shipped_suite_is_complete_and_every_reference_check_is_satisfiable():
    questions = load_questions()
    assert 50 <= len(questions) <= 100
    assert {q["part"] for q in questions} == set(QUESTION_PARTS)
    assert len({q["id"] for q in questions}) == len(questions)
    assert len(load_general_text()) >= 40
    probe, replay = set(load_general_text()), set(load_general_text("replay_text.jsonl"))
    assert not probe & replay


def test_forgetting_table_deltas_by_hand():
    questions = load_questions()
    parts = [q["part"] for q in questions]
    base = {"passed": [1.0] * len(questions), "nll": [[10.0, 5]] * 40}
    tuned_passed = [0.0 if p == "facts" and i % 5 == 0 else 1.0 for i, p in enumerate(parts)]
    tuned = {"passed": tuned_passed, "nll": [[12.0, 5]] * 40}
    table = forgetting_table(base, tuned, {"facts": 0.05, "general_text": 0.5}, resamples=200)
    facts = [t for t, p in zip(tuned_passed, parts) if p == "facts"]
    assert table["parts"]["facts"]["delta"] == pytest.approx(np.mean(facts) - 1.0)
    assert table["parts"]["general_text"]["delta"] == pytest.approx(math.exp(12 / 5) / math.exp(2) - 1)
    assert table["parts"]["facts"]["failed"] and not table["parts"]["general_text"]["failed"]
    assert table["failed_parts"] == ["facts"] and not table["passed"]
    for row in table["parts"].values():
        assert row["ci_low"] <= row["delta"] + 1e-9 and row["delta"] <= row["ci_high"] + 1e-9
