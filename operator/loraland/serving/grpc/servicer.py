"""The gRPC servicer: decode the message, call the service, encode. Errors are left to
the interceptor."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc

from loraland.serving.engine.request import Finished, FinishReason, Token
from loraland.serving.errors import Conflict, InvalidRequest, NotFound
from loraland.serving.grpc.generated import loraland_serving_pb2 as pb
from loraland.serving.grpc.generated import loraland_serving_pb2_grpc as pb_grpc
from loraland.serving.lora.registry import AdapterExists, AdapterState, AdapterView, UnknownAdapter
from loraland.serving.params import SamplingParams
from loraland.serving.runtime import Runtime
from loraland.serving.service import Prepared
from loraland.serving.state import ServerState

DEFAULT_MAX_NEW_TOKENS = 20
GRPC_ORIGIN = "grpc"

_REASONS = {
    FinishReason.LENGTH: pb.FINISH_REASON_LENGTH,
    FinishReason.EOS: pb.FINISH_REASON_EOS_TOKEN,
    FinishReason.STOP: pb.FINISH_REASON_STOP_SEQUENCE,
}


def _sampling(p: pb.Parameters) -> SamplingParams:
    return SamplingParams(
        max_new_tokens=p.max_new_tokens if p.HasField("max_new_tokens") else DEFAULT_MAX_NEW_TOKENS,
        do_sample=p.do_sample,
        temperature=p.temperature if p.HasField("temperature") else None,
        top_k=p.top_k if p.HasField("top_k") else None,
        top_p=p.top_p if p.HasField("top_p") else None,
        seed=p.seed if p.HasField("seed") else None,
        repetition_penalty=p.repetition_penalty if p.HasField("repetition_penalty") else None,
        stop=tuple(p.stop),
        ignore_eos=p.ignore_eos_token,
    )


def _token(token: Token) -> pb.Token:
    return pb.Token(
        id=token.id, text=token.text, logprob=token.logprob or 0.0, special=token.special
    )


def _finished(done: Finished) -> pb.Finished:
    timing = done.timing
    end = timing.finished if timing.finished is not None else timing.queued
    first = timing.first_token if timing.first_token is not None else end
    message = pb.Finished(
        finish_reason=_REASONS.get(done.reason, pb.FINISH_REASON_UNSPECIFIED),
        generated_text=done.generated_text,
        prompt_tokens=done.prompt_tokens,
        generated_tokens=done.generated_tokens,
        time_to_first_token=first - timing.arrived,
        total_time=end - timing.arrived,
    )
    if done.seed is not None:
        message.seed = done.seed
    return message


def _adapter(view: AdapterView) -> pb.Adapter:
    return pb.Adapter(
        name=view.name,
        uri=view.uri,
        state=view.state.value,
        message=view.message,
        tier=view.tier.value if view.tier else "",
        origin=view.origin,
    )


class LoraServingServicer(pb_grpc.LoraServingServicer):
    def __init__(self, state: ServerState) -> None:
        self.state = state

    def _runtime(self) -> Runtime:
        return self.state.require_runtime()

    def _prepare(self, request: pb.GenerateRequest) -> Prepared:
        arrived = time.monotonic()
        svc = self._runtime().service
        params = request.parameters
        truncate = params.truncate if params.HasField("truncate") else None
        if truncate == 0:
            raise InvalidRequest("truncate must be at least 1, got 0", param="truncate")
        prepared = svc.prepare(
            request.inputs, _sampling(params), None, truncate=truncate, arrived=arrived
        )
        prepared.adapter = svc.adapter_for(params.adapter_id or None)
        return prepared

    async def Generate(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> pb.GenerateResponse:
        prepared = self._prepare(request)
        gen = await self._runtime().service.generate(prepared)
        return pb.GenerateResponse(
            generated_text=gen.finished.generated_text,
            tokens=[_token(t) for t in gen.tokens],
            finished=_finished(gen.finished),
        )

    async def GenerateStream(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GenerateStreamResponse]:
        prepared = self._prepare(request)
        async for item in self._runtime().service.stream(prepared):
            message = pb.GenerateStreamResponse(token=_token(item.token))
            if item.finished is not None:
                message.finished.CopyFrom(_finished(item.finished))
            yield message

    async def ListAdapters(
        self, request: pb.ListAdaptersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAdaptersResponse:
        return pb.ListAdaptersResponse(
            adapters=[_adapter(v) for v in self._runtime().adapters.views()]
        )

    async def LoadAdapter(
        self, request: pb.LoadAdapterRequest, context: grpc.aio.ServicerContext
    ) -> pb.Adapter:
        from loraland.serving.config import check_adapter_name

        try:
            check_adapter_name(request.name)
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="name") from None
        if not request.uri:
            raise InvalidRequest("uri must not be empty", param="uri")
        adapters = self._runtime().adapters
        try:
            future = adapters.add(request.name, request.uri, origin=GRPC_ORIGIN)
        except AdapterExists as exc:
            raise Conflict(str(exc), param="name") from None
        if request.wait:
            view = await asyncio.wrap_future(future)
            if view.state is AdapterState.FAILED:
                raise InvalidRequest(f"adapter '{request.name}' failed to load: {view.message}")
            return _adapter(view)
        current = adapters.get(request.name)
        if current is None:
            raise NotFound(f"adapter '{request.name}' was removed")
        return _adapter(current)

    async def UnloadAdapter(
        self, request: pb.UnloadAdapterRequest, context: grpc.aio.ServicerContext
    ) -> pb.UnloadAdapterResponse:
        try:
            self._runtime().adapters.remove(request.name)
        except UnknownAdapter:
            raise NotFound(f"adapter '{request.name}' is not registered") from None
        return pb.UnloadAdapterResponse()

    async def Health(
        self, request: pb.HealthRequest, context: grpc.aio.ServicerContext
    ) -> pb.HealthResponse:
        return pb.HealthResponse(ready=self.state.ready, model_id=self.state.config.model_id)


def create_server(state: ServerState, host: str, port: int) -> tuple[grpc.aio.Server, int]:
    """A grpc.aio server (not started) and the port it bound."""
    from loraland.serving.grpc.interceptor import ErrorInterceptor

    server = grpc.aio.server(interceptors=[ErrorInterceptor()])
    pb_grpc.add_LoraServingServicer_to_server(LoraServingServicer(state), server)  # type: ignore[no-untyped-call]
    bound = server.add_insecure_port(f"{host}:{port}")
    return server, bound
