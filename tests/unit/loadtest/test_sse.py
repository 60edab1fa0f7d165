"""SSE framing (bytes split anywhere) and the TGI / OpenAI chunk shapes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from loraland.loadtest.sse import FrameError, SSEParser, parse_openai, parse_tgi

# Frames as loraland serve sends them (sse-starlette: CRLF line ends).
TGI_FRAMES = [
    '{"token":{"id":29,"text":"-","logprob":-0.78,"special":false},"generated_text":null,"details":null}',
    '{"token":{"id":1717,"text":"by","logprob":-1.93,"special":false},"generated_text":null,"details":null}',
    '{"token":{"id":29,"text":"-","logprob":-0.02,"special":false},"generated_text":"-by-",'
    '"details":{"finish_reason":"length","prompt_tokens":1,"generated_tokens":3,"seed":null}}',
]
OPENAI_FRAMES = [
    '{"id":"c1","object":"chat.completion.chunk","model":"ad-0","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}',
    '{"id":"c1","object":"chat.completion.chunk","model":"ad-0","choices":[{"index":0,"delta":{"content":"Hello"}}]}',
    '{"id":"c1","object":"chat.completion.chunk","model":"ad-0","choices":[{"index":0,"delta":{"content":"!"}}]}',
    '{"id":"c1","object":"chat.completion.chunk","model":"ad-0","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}',
    "[DONE]",
]


def _wire(frames: list[str], newline: str = "\r\n") -> bytes:
    return "".join(f"data: {f}{newline}{newline}" for f in frames).encode()


def _feed_all(parser: SSEParser, pieces: list[bytes]) -> list[str]:
    return [event for piece in pieces for event in parser.feed(piece)]


@pytest.mark.parametrize("newline", ["\r\n", "\n", "\r"])
def test_whole_stream(newline: str) -> None:
    assert SSEParser().feed(_wire(TGI_FRAMES, newline)) == TGI_FRAMES


@given(st.lists(st.integers(0, 2000), max_size=30), st.sampled_from(["\r\n", "\n", "\r"]))
def test_split_anywhere_gives_the_same_events(cuts: list[int], newline: str) -> None:
    wire = _wire([*TGI_FRAMES, '{"text":"é ✓ 日本"}'], newline)
    points = sorted({min(c, len(wire)) for c in cuts})
    pieces = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
    assert _feed_all(SSEParser(), pieces) == [*TGI_FRAMES, '{"text":"é ✓ 日本"}']


def test_comments_fields_and_multiline_data() -> None:
    wire = b": ping\r\n\r\nevent: message\r\nid: 3\r\ndata: line one\r\ndata:line two\r\n\r\n"
    assert SSEParser().feed(wire) == ["line one\nline two"]


def test_unfinished_event_is_held_back() -> None:
    parser = SSEParser()
    assert parser.feed(b'data: {"a": 1}\r\n') == []
    assert parser.feed(b"\r\n") == ['{"a": 1}']


def test_tgi_chunks() -> None:
    chunks = [parse_tgi(f) for f in TGI_FRAMES]
    assert [c.tokens for c in chunks] == [1, 1, 1]
    assert [c.final for c in chunks] == [False, False, True]
    assert chunks[-1].generated_tokens == 3 and chunks[0].generated_tokens is None
    assert "".join(c.text for c in chunks) == "-by-"


def test_tgi_error_frame() -> None:
    chunk = parse_tgi(json.dumps({"error": "queue is full", "error_type": "overloaded"}))
    assert chunk.error is not None and chunk.error.overloaded and chunk.tokens == 0
    other = parse_tgi(json.dumps({"error": "adapter failed", "error_type": "generation"}))
    assert other.error is not None and not other.error.overloaded


@pytest.mark.parametrize("data", ["not json", "[1, 2]", '{"generated_text": null}'])
def test_tgi_bad_frames(data: str) -> None:
    with pytest.raises(FrameError, match="TGI stream"):
        parse_tgi(data)


def test_openai_chunks() -> None:
    chunks = [parse_openai(f) for f in OPENAI_FRAMES]
    assert [c.tokens for c in chunks] == [0, 1, 1, 0, 0]
    assert [c.final for c in chunks] == [False, False, False, False, True]
    assert "".join(c.text for c in chunks) == "Hello!"


def test_openai_usage_and_completions_shape() -> None:
    usage = parse_openai('{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":42}}')
    assert usage.generated_tokens == 42 and usage.tokens == 0
    legacy = parse_openai('{"choices":[{"index":0,"text":" word"}]}')
    assert legacy.tokens == 1 and legacy.text == " word"


def test_openai_error_event() -> None:
    chunk = parse_openai('{"error":{"message":"busy","type":"overloaded","param":null}}')
    assert chunk.error is not None and chunk.error.overloaded and chunk.error.message == "busy"
    with pytest.raises(FrameError, match="OpenAI stream"):
        parse_openai("{oops")
