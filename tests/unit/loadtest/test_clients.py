"""The HTTP clients against scripted transports: timing, token counts, 429s, failures."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from loraland.loadtest.clients import (
    GenerationRequest,
    OpenAIClient,
    Overloaded,
    RequestFailed,
    TGIClient,
)


class Clock:
    """Advances by one second per reading, so each timestamp is distinguishable."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


class Chunks(httpx.SyncByteStream):
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def __iter__(self) -> Iterator[bytes]:
        yield from self.pieces


def _tgi_frame(text: str, last: bool = False, generated: int | None = None) -> bytes:
    frame = {
        "token": {"id": 1, "text": text, "logprob": 0.0, "special": False},
        "generated_text": "all" if last else None,
        "details": {"finish_reason": "length", "generated_tokens": generated} if last else None,
    }
    return f"data:{json.dumps(frame)}\n\n".encode()


def _transport(status: int, pieces: list[bytes], seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, stream=Chunks(pieces))

    return httpx.MockTransport(handler)


REQUEST = GenerationRequest(
    prompt="hello", max_new_tokens=3, adapter="ad-1", ignore_eos=True, seed=5
)


def test_tgi_stream_timing_and_body() -> None:
    seen: list[httpx.Request] = []
    pieces = [_tgi_frame("a"), _tgi_frame("b") + _tgi_frame("c", last=True, generated=3)]
    client = TGIClient("http://x", 10, clock=Clock(), transport=_transport(200, pieces, seen))
    timing = client.stream(REQUEST)
    # sent at 101; the first piece's token at 102; the second piece's two frames at 103, 104
    assert (timing.sent, timing.first_token, timing.last_token) == (101.0, 102.0, 104.0)
    assert timing.output_tokens == 3
    assert seen[0].url.path == "/generate_stream"
    body = json.loads(seen[0].content)
    assert body == {
        "inputs": "hello",
        "parameters": {
            "max_new_tokens": 3,
            "details": True,
            "adapter_id": "ad-1",
            "ignore_eos_token": True,
            "seed": 5,
        },
    }


def test_tgi_base_model_request_has_no_adapter() -> None:
    seen: list[httpx.Request] = []
    transport = _transport(200, [_tgi_frame("a", last=True, generated=1)], seen)
    TGIClient("http://x", 10, transport=transport).stream(GenerationRequest("hi", 1))
    assert json.loads(seen[0].content)["parameters"] == {"max_new_tokens": 1, "details": True}


def test_reported_count_wins_over_frame_count() -> None:
    # A server that counts an end-of-sequence token it does not stream still reports it.
    pieces = [_tgi_frame("a"), _tgi_frame("b", last=True, generated=5)]
    timing = TGIClient("http://x", 10, transport=_transport(200, pieces, [])).stream(REQUEST)
    assert timing.output_tokens == 5


def test_429_is_overloaded_not_failed() -> None:
    body = [b'{"error":"too many requests","error_type":"overloaded"}']
    with pytest.raises(Overloaded, match="HTTP 429: too many requests"):
        TGIClient("http://x", 10, transport=_transport(429, body, [])).stream(REQUEST)


def test_overloaded_error_frame_is_overloaded() -> None:
    pieces = [_tgi_frame("a"), b'data:{"error":"shed","error_type":"overloaded"}\n\n']
    with pytest.raises(Overloaded, match="shed"):
        TGIClient("http://x", 10, transport=_transport(200, pieces, [])).stream(REQUEST)


@pytest.mark.parametrize(
    ("status", "pieces", "message", "tokens"),
    [
        (
            422,
            [b'{"error":"inputs is empty","error_type":"validation"}'],
            "HTTP 422: inputs is empty",
            0,
        ),
        (404, [b'{"error":"adapter \'x\' is not loaded"}'], "HTTP 404: adapter 'x'", 0),
        (500, [b"<html>boom</html>"], "HTTP 500: <html>boom", 0),
        (200, [_tgi_frame("a"), _tgi_frame("b")], "ended before its last event", 2),
        (200, [_tgi_frame("a"), b'data:{"error":"oom","error_type":"generation"}\n\n'], "oom", 1),
        (200, [b"data: not json\n\n"], "not JSON", 0),
        (200, [], "ended before its last event", 0),
    ],
)
def test_failures(status: int, pieces: list[bytes], message: str, tokens: int) -> None:
    client = TGIClient("http://x", 10, transport=_transport(status, pieces, []))
    with pytest.raises(RequestFailed, match=message) as info:
        client.stream(REQUEST)
    assert info.value.tokens == tokens
    assert info.value.elapsed_s >= 0


def test_connection_error_is_a_failure() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = TGIClient("http://x", 10, transport=httpx.MockTransport(refuse))
    with pytest.raises(RequestFailed, match="ConnectError: connection refused"):
        client.stream(REQUEST)


def _openai_chunk(content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    choice: dict[str, object] = {"index": 0, "delta": delta}
    if finish:
        choice["finish_reason"] = finish
    return f"data: {json.dumps({'choices': [choice]})}\r\n\r\n".encode()


def _models_then(pieces: list[bytes], seen: list[httpx.Request]) -> httpx.MockTransport:
    models = {
        "data": [
            {"id": "ad-1", "parent": "smol"},
            {"id": "smol", "parent": None},
        ]
    }

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v1/models":
            return httpx.Response(200, json=models)
        return httpx.Response(200, stream=Chunks(pieces))

    return httpx.MockTransport(handler)


def test_openai_stream_and_base_model_discovery() -> None:
    seen: list[httpx.Request] = []
    pieces = [
        b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\r\n\r\n',
        _openai_chunk("Hel"),
        _openai_chunk("lo") + _openai_chunk(None, "length"),
        b"data: [DONE]\r\n\r\n",
    ]
    client = OpenAIClient("http://x", 10, clock=Clock(), transport=_models_then(pieces, seen))
    timing = client.stream(GenerationRequest("hi", 2))
    # sent 101, role chunk 102 (no token), "Hel" 103, "lo" 104, finish 105, [DONE] 106
    assert (timing.first_token, timing.last_token, timing.output_tokens) == (103.0, 104.0, 2)
    body = json.loads(seen[-1].content)
    assert body["model"] == "smol"  # the card without a parent is the base model
    assert body["stream"] is True and body["max_tokens"] == 2 and body["temperature"] == 0
    assert [r.url.path for r in seen] == ["/v1/models", "/v1/chat/completions"]
    client.stream(GenerationRequest("hi", 2, adapter="ad-1"))
    assert json.loads(seen[-1].content)["model"] == "ad-1"
    assert [r.url.path for r in seen].count("/v1/models") == 1  # read once


def test_openai_error_shape_and_missing_models() -> None:
    body = [b'{"error":{"message":"model \'zzz\' not found","type":"not_found"}}']
    client = OpenAIClient("http://x", 10, base_model="smol", transport=_transport(404, body, []))
    with pytest.raises(RequestFailed, match="HTTP 404: model 'zzz' not found"):
        client.stream(GenerationRequest("hi", 2))
    empty = OpenAIClient("http://x", 10, transport=_transport(200, [b'{"data": []}'], []))
    with pytest.raises(RequestFailed, match="--openai-base-model"):
        empty.stream(GenerationRequest("hi", 2))
