"""Timestamps of one answer -> the seed's four measurements -> Locust events."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from loraland.loadtest.metrics import (
    OUTPUT_TOKENS_PER_S,
    TIME_TO_FIRST_TOKEN,
    TOKEN_STREAMING_TIME,
    TOTAL_REQUEST_TIME,
    StreamTiming,
    metric_events,
    request_metrics,
)


def test_definitions() -> None:
    metrics = request_metrics(
        StreamTiming(sent=10.0, first_token=10.25, last_token=12.25, output_tokens=40)
    )
    assert metrics.time_to_first_token_ms == pytest.approx(250.0)
    assert metrics.total_request_time_ms == pytest.approx(2250.0)
    assert metrics.token_streaming_time_ms == pytest.approx(2000.0)
    # tokens per second, not the seed's upside-down seconds per token
    assert metrics.output_tokens_per_s == pytest.approx(20.0)


def test_one_token_answer_has_no_rate() -> None:
    metrics = request_metrics(StreamTiming(1.0, 1.5, 1.5, 1))
    assert metrics.output_tokens_per_s is None
    names = [e.name for e in metric_events(metrics)]
    assert names == [TIME_TO_FIRST_TOKEN, TOTAL_REQUEST_TIME, TOKEN_STREAMING_TIME]


def test_events_carry_values_and_token_counts() -> None:
    events = metric_events(request_metrics(StreamTiming(0.0, 0.1, 1.1, 11)))
    by_name = {e.name: e for e in events}
    assert set(by_name) == {
        TIME_TO_FIRST_TOKEN,
        TOTAL_REQUEST_TIME,
        TOKEN_STREAMING_TIME,
        OUTPUT_TOKENS_PER_S,
    }
    assert by_name[OUTPUT_TOKENS_PER_S].value == pytest.approx(11.0)
    assert by_name[TOTAL_REQUEST_TIME].value == pytest.approx(1100.0)
    assert {e.length for e in events} == {11}


@pytest.mark.parametrize(
    ("sent", "first", "last", "tokens", "message"),
    [
        (2.0, 1.0, 3.0, 5, "out of order"),
        (1.0, 3.0, 2.0, 5, "out of order"),
        (1.0, 2.0, 3.0, 0, "at least one output token"),
    ],
)
def test_bad_timings_are_refused(
    sent: float, first: float, last: float, tokens: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        StreamTiming(sent, first, last, tokens)


@given(
    sent=st.floats(0, 1e6),
    ttft=st.floats(0, 100),
    streaming=st.floats(1e-3, 100),
    tokens=st.integers(1, 10_000),
)
def test_total_is_ttft_plus_streaming(
    sent: float, ttft: float, streaming: float, tokens: int
) -> None:
    metrics = request_metrics(StreamTiming(sent, sent + ttft, sent + ttft + streaming, tokens))
    assert metrics.total_request_time_ms == pytest.approx(
        metrics.time_to_first_token_ms + metrics.token_streaming_time_ms, rel=1e-6, abs=1e-3
    )
    assert metrics.output_tokens_per_s is not None
    assert metrics.output_tokens_per_s * metrics.token_streaming_time_ms / 1000 == pytest.approx(
        tokens, rel=1e-6
    )
