"""Stream one answer over gRPC (``loraland_serving.proto``'s ``GenerateStream``) and time it.

The stubs are the server's generated code: the proto is the wire contract both sides
share, and importing the generated modules pulls in nothing of the server but them (the
one import from ``loraland.serving`` this package makes; ``.importlinter`` allows exactly
that edge).

Under Locust, grpcio's own threads must cooperate with gevent: :mod:`loraland.loadtest.users`
calls ``grpc.experimental.gevent.init_gevent()`` before any channel exists. Status codes
map like the HTTP ones: ``RESOURCE_EXHAUSTED`` is the 429 (:class:`Overloaded`), every
other non-OK status a :class:`RequestFailed`.
"""

from __future__ import annotations

import time
from typing import Any

import grpc

from loraland.loadtest.clients import (
    Clock,
    GenerationRequest,
    Overloaded,
    RequestFailed,
)
from loraland.loadtest.metrics import StreamTiming
from loraland.serving.grpc.generated import loraland_serving_pb2 as pb
from loraland.serving.grpc.generated import loraland_serving_pb2_grpc as pb_grpc


def grpc_target(host: str) -> str:
    """``grpc://h:p``, ``http://h:p`` or ``h:p`` -> ``h:p`` (what grpcio dials)."""
    for scheme in ("grpc://", "http://", "https://"):
        if host.startswith(scheme):
            host = host[len(scheme) :]
            break
    host = host.rstrip("/")
    if not host or "/" in host:
        raise ValueError(f"gRPC host must be HOST:PORT (optionally grpc://HOST:PORT), got {host!r}")
    return host


def build_request(request: GenerationRequest) -> Any:
    parameters = pb.Parameters(
        adapter_id=request.adapter or "",
        max_new_tokens=request.max_new_tokens,
        do_sample=False,
        ignore_eos_token=request.ignore_eos,
    )
    if request.seed is not None:
        parameters.seed = request.seed
    return pb.GenerateRequest(inputs=request.prompt, parameters=parameters)


class GrpcClient:
    def __init__(self, host: str, timeout_s: float, clock: Clock = time.perf_counter) -> None:
        self._channel = grpc.insecure_channel(grpc_target(host))
        self._stub = pb_grpc.LoraServingStub(self._channel)  # type: ignore[no-untyped-call]
        self._timeout_s = timeout_s
        self._clock = clock

    def stream(self, request: GenerationRequest) -> StreamTiming:
        message = build_request(request)
        sent = self._clock()
        first: float | None = None
        last: float | None = None
        events = 0
        reported = 0
        finished = False
        try:
            for response in self._stub.GenerateStream(message, timeout=self._timeout_s):
                now = self._clock()
                if response.HasField("token"):
                    first = now if first is None else first
                    last = now
                    events += 1
                if response.HasField("finished"):
                    reported = response.finished.generated_tokens
                    finished = True
                    break
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            detail = exc.details() if hasattr(exc, "details") else str(exc)
            text = f"gRPC {code.name if code else 'error'}: {detail}"
            if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise Overloaded(text, self._clock() - sent) from None
            raise RequestFailed(text, self._clock() - sent, events) from None
        if not finished:
            raise RequestFailed(
                "gRPC stream ended before its finished message", self._clock() - sent, events
            )
        if first is None or last is None:
            raise RequestFailed("gRPC stream ended without a token", self._clock() - sent)
        return StreamTiming(sent, first, last, reported or events)

    def close(self) -> None:
        self._channel.close()
