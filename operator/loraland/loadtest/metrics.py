"""From the timestamps of one streamed answer to the seed's measurements.

A client records three instants on one monotonic clock (seconds) and the number of output
tokens; everything else is arithmetic:

    time to first token   = first_token - sent
    total request time    = last_token - sent
    token streaming time  = last_token - first_token
    output tokens / s     = output_tokens / token streaming time

The last one is the seed's "throughput" turned right side up: the seed writes streaming
time over tokens, which is seconds per token; we report tokens per second. It is
undefined for a one-token answer (no streaming time), and then simply not recorded.

Each measurement becomes one Locust request event (:func:`metric_events`). Locust keeps a
"response time" in milliseconds per event, so the three times are in ms; the tokens-per-
second event carries tokens/s in that field (Locust's tables label it ms; our report does
not). Every event's ``response_length`` is the answer's output-token count, so Locust's
"Average Content Size" of any row is the mean number of output tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Locust request names of the measurements (one row each in Locust's statistics).
TIME_TO_FIRST_TOKEN = "time_to_first_token"
TOTAL_REQUEST_TIME = "total_request_time"
TOKEN_STREAMING_TIME = "token_streaming_time"
OUTPUT_TOKENS_PER_S = "output_tokens_per_s"
#: Requests that failed (HTTP error, broken stream, timeout): their own row, so that
#: failed attempts do not blur the latency percentiles of answered ones.
FAILED_REQUEST = "failed_request"
#: 429 answers: request type and name of their row. Not failures: the server said
#: "not now" on purpose; the report counts them apart.
OVERLOADED_TYPE = "OVERLOADED"
OVERLOADED_NAME = "429_overloaded"

METRIC_NAMES = (TIME_TO_FIRST_TOKEN, TOTAL_REQUEST_TIME, TOKEN_STREAMING_TIME, OUTPUT_TOKENS_PER_S)


@dataclass(frozen=True)
class StreamTiming:
    """Instants of one answered request on one monotonic clock, in seconds."""

    sent: float
    first_token: float
    last_token: float
    output_tokens: int

    def __post_init__(self) -> None:
        if self.output_tokens < 1:
            raise ValueError(f"an answer needs at least one output token, got {self.output_tokens}")
        if not self.sent <= self.first_token <= self.last_token:
            raise ValueError(
                "timestamps out of order: sent "
                f"{self.sent}, first token {self.first_token}, last token {self.last_token}"
            )


@dataclass(frozen=True)
class RequestMetrics:
    time_to_first_token_ms: float
    total_request_time_ms: float
    token_streaming_time_ms: float
    output_tokens: int
    #: None when the streaming time is zero (a one-token answer).
    output_tokens_per_s: float | None


@dataclass(frozen=True)
class MetricEvent:
    """One Locust request event: ``name``, ``response_time`` (value) and length."""

    name: str
    value: float
    length: int


def request_metrics(timing: StreamTiming) -> RequestMetrics:
    streaming_s = timing.last_token - timing.first_token
    return RequestMetrics(
        time_to_first_token_ms=(timing.first_token - timing.sent) * 1000.0,
        total_request_time_ms=(timing.last_token - timing.sent) * 1000.0,
        token_streaming_time_ms=streaming_s * 1000.0,
        output_tokens=timing.output_tokens,
        output_tokens_per_s=timing.output_tokens / streaming_s if streaming_s > 0 else None,
    )


def metric_events(metrics: RequestMetrics) -> list[MetricEvent]:
    tokens = metrics.output_tokens
    events = [
        MetricEvent(TIME_TO_FIRST_TOKEN, metrics.time_to_first_token_ms, tokens),
        MetricEvent(TOTAL_REQUEST_TIME, metrics.total_request_time_ms, tokens),
        MetricEvent(TOKEN_STREAMING_TIME, metrics.token_streaming_time_ms, tokens),
    ]
    if metrics.output_tokens_per_s is not None:
        events.append(MetricEvent(OUTPUT_TOKENS_PER_S, metrics.output_tokens_per_s, tokens))
    return events
