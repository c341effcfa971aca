"""BLEU, ROUGE-L and the fuzzy ratio against numbers worked out by hand."""

import math

import pytest

from hone.rewards.text_similarity import bleu, fuzzy_ratio, lcs_length, rouge_l, words

HYP = words("the cat sat on the mat")
REF = words("the cat is on the mat")


def test_words_split_punctuation():
    assert words("Hello, world!") == ["Hello", ",", "world", "!"]


def test_bleu_by_hand():
    # 1-grams: the×2, cat, on, mat match (sat does not): 5/6, unsmoothed.
    # 2-grams: "the cat", "on the", "the mat" of 5 match: (3+1)/(5+1).
    # 3-grams: "on the mat" of 4: (1+1)/(4+1).  4-grams: none of 3: (0+1)/(3+1).  Same length: no penalty.
    expected = (5 / 6 * 4 / 6 * 2 / 5 * 1 / 4) ** 0.25
    assert bleu(HYP, REF) == pytest.approx(expected)
    assert expected == pytest.approx(0.4855, abs=1e-4)


def test_bleu_brevity_penalty_by_hand():
    # "the cat" against 6 reference words: every precision is 1 (no 3/4-grams: (0+1)/(0+1)), BP = e^(1 - 6/2)
    assert bleu(words("the cat"), REF) == pytest.approx(math.exp(-2))


def test_bleu_edges():
    assert bleu(REF, REF) == pytest.approx(1.0)
    assert bleu(words("dog"), REF) == 0.0  # no word in common
    assert bleu([], REF) == 0.0 and bleu([], []) == 1.0


def test_rouge_l_by_hand():
    assert lcs_length(HYP, REF) == 5  # the cat on the mat
    assert rouge_l(HYP, REF) == pytest.approx(5 / 6)
    # LCS "the gunman" = 2: precision 2/6, recall 2/4, F1 = 2 * (1/3)(1/2) / (1/3 + 1/2) = 0.4
    assert rouge_l(words("the gunman was killed by police"), words("police killed the gunman")) == pytest.approx(0.4)
    assert rouge_l(words("x y"), REF) == 0.0 and rouge_l([], []) == 1.0


def test_fuzzy_ratio_by_hand():
    assert fuzzy_ratio("abcd", "abce") == pytest.approx(2 * 3 / 8)
    assert fuzzy_ratio("", "") == 1.0 and fuzzy_ratio("", "a") == 0.0
