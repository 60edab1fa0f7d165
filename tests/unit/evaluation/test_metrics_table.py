"""The LoRA Land metric family, table-driven."""

from __future__ import annotations

import pytest
from loraland.evaluation.metrics import (
    MetricConfig,
    flexible_accuracy,
    last_number_match,
    mean_score,
    regression_score,
    rouge_l,
)
from loraland.evaluation.parsing import extract_answer

SENTIMENT = ("negative", "positive")
INTENTS = ("balance_inquiry", "card_lost", "close_account")
BOOL = ("false", "true")


@pytest.mark.parametrize(
    ("prediction", "reference", "labels", "expected"),
    [
        ("positive", "positive", SENTIMENT, 1.0),
        ("  Positive.", "positive", SENTIMENT, 1.0),
        ('"NEGATIVE"', "negative", SENTIMENT, 1.0),
        ("The sentiment is positive.", "positive", SENTIMENT, 1.0),
        ("negative\nThe review is positive", "positive", SENTIMENT, 0.0),  # first line only
        ("1", "positive", SENTIMENT, 1.0),  # label digit -> label
        ("positive", "1", SENTIMENT, 1.0),  # reference given as a class index
        ("0", "positive", SENTIMENT, 0.0),
        ("yes", "true", BOOL, 1.0),
        ("No.", "false", BOOL, 1.0),
        ("True", "yes", (), 1.0),
        ("Yes, it is.", "true", BOOL, 1.0),
        ("card_lost", "card_lost", INTENTS, 1.0),
        ("card lost", "card_lost", INTENTS, 1.0),
        ("I think the intent is close_account", "close_account", INTENTS, 1.0),
        ("lost card", "card_lost", INTENTS, 0.0),
        ("", "positive", SENTIMENT, 0.0),
        ("Paris", "paris", (), 1.0),
        ("Paris, France", "paris", (), 0.0),
        ('{"b": [1], "a": "x"}', '{"a": "x", "b": [1]}', (), 1.0),  # JSON by value
        ('Sure: {"a": "x"} done', '{"a": "x"}', (), 1.0),
        ('{"a": "y"}', '{"a": "x"}', (), 0.0),
        ("3", "3", ("1", "2", "3"), 1.0),  # digit labels are not indices
    ],
)
def test_flexible_accuracy(
    prediction: str, reference: str, labels: tuple[str, ...], expected: float
) -> None:
    assert flexible_accuracy(prediction, reference, labels) == expected


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("the cat sat on the mat", "the cat sat on the mat", 1.0),
        ("", "", 1.0),
        ("", "something", 0.0),
        ("dog", "cat", 0.0),
        # LCS = "the cat on the mat" (5 tokens); P = 5/6, R = 5/6
        ("the cat sat on the mat", "the cat is on the mat", 5 / 6),
        # punctuation is no token: ref = inform name x; LCS 2, P = 1, R = 2/3 -> F = 0.8
        ("inform name", "inform ( name [ x ] )", 0.8),
        ("Hello, World!", "hello world", 1.0),
    ],
)
def test_rouge_l(prediction: str, reference: str, expected: float) -> None:
    assert rouge_l(prediction, reference) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("12 + 3 - 5 = 10", "10", 1.0),
        ("so she has 1,234 apples", "#### 1234", 1.0),
        ("The answer is 72.", "Natalia sold 48/2 = 24 ... 48+24 = 72\n#### 72", 1.0),
        ("-3", "#### -3", 1.0),
        ("2.50", "2.5", 1.0),
        ("10 then 11", "10", 0.0),
        ("no number", "5", 0.0),
    ],
)
def test_last_number(prediction: str, reference: str, expected: float) -> None:
    assert last_number_match(prediction, reference) == expected


@pytest.mark.parametrize(
    ("prediction", "reference", "value_range", "expected"),
    [
        ("4", "4", (1.0, 5.0), 1.0),
        ("3", "4", (1.0, 5.0), 0.75),
        ("1 star", "5", (1.0, 5.0), 0.0),
        ("9", "1", (1.0, 5.0), 0.0),  # clipped at 0
        ("2.5", "3.0", (0.0, 5.0), 0.9),
        ("none", "3", (0.0, 5.0), 0.0),
    ],
)
def test_regression(
    prediction: str, reference: str, value_range: tuple[float, float], expected: float
) -> None:
    assert regression_score(prediction, reference, value_range) == pytest.approx(expected)


def test_mean_score_dispatches_by_metric() -> None:
    config = MetricConfig("accuracy", SENTIMENT)
    assert mean_score(config, ["positive", "nope"], ["positive", "negative"]) == 0.5
    assert mean_score(MetricConfig("regression", value_range=(1, 5)), ["3"], ["5"]) == 0.5
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        mean_score(config, ["a", "b"], ["a"])


def test_extract_answer_for_multiline_generation() -> None:
    assert extract_answer("\n\n  Negative  \nmore", SENTIMENT) == "negative"
    assert extract_answer("Line one\nline two", (), single_line=False) == "line one line two"
