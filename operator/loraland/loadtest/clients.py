"""Stream one answer and time it: the TGI/LoRAX and OpenAI HTTP clients.

A client sends one request, reads the stream as it arrives, stamps the first and the last
token on a monotonic clock, and returns a :class:`~loraland.loadtest.metrics.StreamTiming`.
It raises :class:`Overloaded` for a 429 (or an ``overloaded`` error event) and
:class:`RequestFailed` for anything else that is not a complete answer: an HTTP error, a
stream that ends early or reports an error, a connection problem, a timeout.

httpx's blocking client is used on purpose: under Locust, gevent has patched the socket
module, so every simulated user's read yields to the others while it waits, and outside
Locust (tests, scripts) the same code runs as plain blocking I/O.

Output tokens are the server's own count when the stream reports one (TGI/LoRAX
``details.generated_tokens`` on the last frame, which counts an end-of-sequence token the
way those servers do; an OpenAI ``usage`` block); otherwise the number of token events.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from loraland.loadtest.metrics import StreamTiming
from loraland.loadtest.sse import FrameError, SSEParser, StreamChunk, parse_openai, parse_tgi

Clock = Callable[[], float]


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    max_new_tokens: int
    #: None: the base model.
    adapter: str | None = None
    ignore_eos: bool = False
    seed: int | None = None


class Overloaded(Exception):
    """The server answered 429 (or said ``overloaded``): shed load, not a failure."""

    def __init__(self, message: str, elapsed_s: float) -> None:
        super().__init__(message)
        self.elapsed_s = elapsed_s


class RequestFailed(Exception):
    """Anything short of a complete answer; ``tokens`` counts what arrived before."""

    def __init__(self, message: str, elapsed_s: float, tokens: int = 0) -> None:
        super().__init__(message)
        self.elapsed_s = elapsed_s
        self.tokens = tokens


class StreamClient(Protocol):
    def stream(self, request: GenerationRequest) -> StreamTiming: ...

    def close(self) -> None: ...


class _Tally:
    """First/last token instants and token counts of one stream."""

    def __init__(self, sent: float) -> None:
        self.sent = sent
        self.first: float | None = None
        self.last: float | None = None
        self.events = 0
        self.reported: int | None = None

    def add(self, chunk: StreamChunk, now: float) -> None:
        if chunk.tokens:
            if self.first is None:
                self.first = now
            self.last = now
            self.events += chunk.tokens
        if chunk.generated_tokens is not None:
            self.reported = chunk.generated_tokens

    def timing(self, clock: Clock) -> StreamTiming:
        if self.first is None or self.last is None:
            raise RequestFailed("the stream ended without a token", clock() - self.sent)
        tokens = self.reported if self.reported else self.events
        return StreamTiming(self.sent, self.first, self.last, tokens)


def error_message(response: httpx.Response) -> str:
    """``HTTP 422: <the server's message>`` for the TGI and OpenAI error shapes."""
    detail = response.text[:300]
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            detail = str(error.get("message") or error)
        elif error is not None:
            detail = str(error)
        elif "detail" in body:
            detail = str(body["detail"])
    return f"HTTP {response.status_code}: {detail}"


class _SSEClient:
    path = ""
    shape = ""

    def __init__(
        self,
        base_url: str,
        timeout_s: float,
        clock: Clock = time.perf_counter,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 30.0)),
            transport=transport,
        )
        self._clock = clock

    def body(self, request: GenerationRequest) -> dict[str, Any]:
        raise NotImplementedError

    def parse(self, data: str) -> StreamChunk:
        raise NotImplementedError

    def stream(self, request: GenerationRequest) -> StreamTiming:
        payload = self.body(request)
        sent = self._clock()
        tally = _Tally(sent)
        try:
            with self._http.stream("POST", self.path, json=payload) as response:
                if response.status_code >= 400:
                    response.read()
                    message = error_message(response)
                    if response.status_code == 429:
                        raise Overloaded(message, self._clock() - sent)
                    raise RequestFailed(message, self._clock() - sent)
                for chunk in self._chunks(response.iter_bytes()):
                    tally.add(chunk, self._clock())
                    if chunk.error is not None:
                        message = f"{self.shape} stream error ({chunk.error.error_type}): "
                        if chunk.error.overloaded:
                            raise Overloaded(message + chunk.error.message, self._clock() - sent)
                        raise RequestFailed(
                            message + chunk.error.message, self._clock() - sent, tally.events
                        )
                    if chunk.final:
                        return tally.timing(self._clock)
        except httpx.HTTPError as exc:
            raise RequestFailed(
                f"{type(exc).__name__}: {exc}", self._clock() - sent, tally.events
            ) from exc
        except FrameError as exc:
            raise RequestFailed(str(exc), self._clock() - sent, tally.events) from exc
        raise RequestFailed(
            f"{self.shape} stream ended before its last event", self._clock() - sent, tally.events
        )

    def _chunks(self, raw: Iterator[bytes]) -> Iterator[StreamChunk]:
        parser = SSEParser()
        for piece in raw:
            for data in parser.feed(piece):
                yield self.parse(data)

    def get_json(self, path: str) -> Any:
        response = self._http.get(path)
        response.raise_for_status()
        return response.json()

    def close(self) -> None:
        self._http.close()


class TGIClient(_SSEClient):
    """``POST /generate_stream`` (TGI, LoRAX, loraland); ``adapter_id`` picks the adapter."""

    path = "/generate_stream"
    shape = "TGI"

    def body(self, request: GenerationRequest) -> dict[str, Any]:
        parameters: dict[str, Any] = {
            "max_new_tokens": request.max_new_tokens,
            "details": True,
        }
        if request.adapter is not None:
            parameters["adapter_id"] = request.adapter
        if request.ignore_eos:
            parameters["ignore_eos_token"] = True
        if request.seed is not None:
            parameters["seed"] = request.seed
        return {"inputs": request.prompt, "parameters": parameters}

    def parse(self, data: str) -> StreamChunk:
        return parse_tgi(data)


class OpenAIClient(_SSEClient):
    """``POST /v1/chat/completions`` with ``stream: true``; ``model`` picks the adapter.

    Base-model requests need the served model's own name; unless given, it is read once
    from ``GET /v1/models`` (the card without a ``parent``, else the first).
    """

    path = "/v1/chat/completions"
    shape = "OpenAI"

    def __init__(
        self,
        base_url: str,
        timeout_s: float,
        base_model: str | None = None,
        clock: Clock = time.perf_counter,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, timeout_s, clock, transport)
        self._base_model = base_model

    def base_model(self) -> str:
        if self._base_model is None:
            try:
                cards = self.get_json("/v1/models").get("data") or []
            except (httpx.HTTPError, ValueError, AttributeError) as exc:
                raise RequestFailed(
                    f"cannot read the base model's name from /v1/models ({exc}); "
                    "give --openai-base-model",
                    0.0,
                ) from exc
            named = [c for c in cards if isinstance(c, dict) and c.get("id")]
            if not named:
                raise RequestFailed("/v1/models lists no model; give --openai-base-model", 0.0)
            roots = [c for c in named if not c.get("parent")]
            self._base_model = str((roots or named)[0]["id"])
        return self._base_model

    def body(self, request: GenerationRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.adapter if request.adapter is not None else self.base_model(),
            "messages": [{"role": "user", "content": request.prompt}],
            "max_tokens": request.max_new_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.ignore_eos:
            body["ignore_eos"] = True  # vLLM's name; servers that do not know it ignore it
        if request.seed is not None:
            body["seed"] = request.seed
        return body

    def parse(self, data: str) -> StreamChunk:
        return parse_openai(data)
