"""OpenAI-compatible routes: ``/v1/completions``, ``/v1/chat/completions``, ``/v1/models``.

``model`` picks the adapter (the served model id means the base model). Answers leave
stop sequences out, as OpenAI's do; streams end with ``data: [DONE]``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse

from loraland.serving.engine.request import Finished, FinishReason
from loraland.serving.errors import InvalidRequest, ServingError
from loraland.serving.http.state import runtime, service, start_stream, unless_disconnected
from loraland.serving.http.timing import final_headers, first_token_headers
from loraland.serving.lora.registry import AdapterState
from loraland.serving.service import GenerationService, Prepared, StreamItem
from loraland.serving.stoptext import StopStreamer, strip_stop
from loraland.serving.wire.openai import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatDelta,
    ChatMessageOut,
    ChatRequest,
    Completion,
    CompletionChoice,
    CompletionRequest,
    ErrorResponse,
    ModelCard,
    ModelList,
    Usage,
)

router = APIRouter(prefix="/v1", tags=["OpenAI"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (404, 422, 424, 429, 503)
}


def _finish(finished: Finished) -> Literal["stop", "length"]:
    return "length" if finished.reason is FinishReason.LENGTH else "stop"


def _usage(finished: Finished) -> Usage:
    return Usage(
        prompt_tokens=finished.prompt_tokens,
        completion_tokens=finished.generated_tokens,
        total_tokens=finished.prompt_tokens + finished.generated_tokens,
    )


def _final_text(finished: Finished, stops: tuple[str, ...]) -> str:
    if finished.reason is FinishReason.STOP:
        return strip_stop(finished.generated_text, stops)
    return finished.generated_text


def _prepare_completion(
    svc: GenerationService, body: CompletionRequest, arrived: float
) -> Prepared:
    unsupported = body.unsupported()
    if unsupported:
        raise InvalidRequest(f"'{unsupported}' is not supported by this server", param=unsupported)
    prompt: str | list[int]
    if isinstance(body.prompt, str):
        prompt = body.prompt
    elif body.prompt and isinstance(body.prompt[0], str):
        prompt = str(body.prompt[0])
    else:
        prompt = [int(t) for t in body.prompt]
        vocab = len(svc.tokenizer.tokenizer)
        if any(not 0 <= t < vocab for t in prompt):
            raise InvalidRequest(f"prompt token ids must be in [0, {vocab})", param="prompt")
    prepared = svc.prepare(prompt, body.sampling(), None, arrived=arrived)
    prepared.adapter = svc.adapter_for(body.model)
    return prepared


def _prepare_chat(svc: GenerationService, body: ChatRequest, arrived: float) -> Prepared:
    unsupported = body.unsupported()
    if unsupported:
        raise InvalidRequest(f"'{unsupported}' is not supported by this server", param=unsupported)
    try:
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="messages") from None
    text = svc.tokenizer.chat_prompt(messages)
    # The template already holds the special tokens the model expects.
    prepared = svc.prepare(text, body.sampling(), None, add_special_tokens=False, arrived=arrived)
    prepared.adapter = svc.adapter_for(body.model)
    return prepared


def _compute_type(request: Request) -> str:
    return "gpu" if runtime(request).device.startswith("cuda") else "cpu"


@router.get("/models", response_model=ModelList)
async def models(request: Request) -> ModelList:
    """The base model and every loaded adapter (as a model whose parent is the base)."""
    rt = runtime(request)
    base = rt.config.model_id
    cards = [ModelCard(id=base, root=rt.config.base_model)]
    for view in rt.adapters.views():
        if view.state is AdapterState.LOADED:
            cards.append(ModelCard(id=view.name, root=view.uri, parent=base))
    return ModelList(data=cards)


@router.post("/completions", response_model=Completion, responses=_ERRORS)
async def completions(request: Request, body: CompletionRequest) -> Response:
    arrived = time.monotonic()
    svc = service(request)
    prepared = _prepare_completion(svc, body, arrived)
    stops = prepared.params.stop
    completion_id = f"cmpl-{uuid.uuid4().hex}"
    if body.stream:

        def chunk(text: str, finish: Literal["stop", "length"] | None) -> dict[str, Any]:
            return Completion(
                id=completion_id,
                model=body.model,
                choices=[CompletionChoice(text=text, finish_reason=finish)],
            ).model_dump(mode="json")

        return await _stream(request, svc, prepared, stops, chunk, None)
    gen = await unless_disconnected(request, svc.generate(prepared))
    result = Completion(
        id=completion_id,
        model=body.model,
        choices=[
            CompletionChoice(
                text=_final_text(gen.finished, stops), finish_reason=_finish(gen.finished)
            )
        ],
        usage=_usage(gen.finished),
    )
    return JSONResponse(
        result.model_dump(mode="json"),
        headers=final_headers(prepared, gen.finished, _compute_type(request)),
    )


@router.post("/chat/completions", response_model=ChatCompletion, responses=_ERRORS)
async def chat_completions(request: Request, body: ChatRequest) -> Response:
    arrived = time.monotonic()
    svc = service(request)
    prepared = _prepare_chat(svc, body, arrived)
    stops = prepared.params.stop
    chat_id = f"chatcmpl-{uuid.uuid4().hex}"
    if body.stream:

        def chunk(text: str, finish: Literal["stop", "length"] | None) -> dict[str, Any]:
            delta = ChatDelta(content=text) if finish is None else ChatDelta()
            return ChatCompletionChunk(
                id=chat_id,
                model=body.model,
                choices=[ChatChunkChoice(delta=delta, finish_reason=finish)],
            ).model_dump(mode="json", exclude_none=True)

        opening = ChatCompletionChunk(
            id=chat_id,
            model=body.model,
            choices=[ChatChunkChoice(delta=ChatDelta(role="assistant", content=""))],
        ).model_dump(mode="json", exclude_none=True)
        return await _stream(request, svc, prepared, stops, chunk, opening)
    gen = await unless_disconnected(request, svc.generate(prepared))
    result = ChatCompletion(
        id=chat_id,
        model=body.model,
        choices=[
            ChatChoice(
                message=ChatMessageOut(content=_final_text(gen.finished, stops)),
                finish_reason=_finish(gen.finished),
            )
        ],
        usage=_usage(gen.finished),
    )
    return JSONResponse(
        result.model_dump(mode="json"),
        headers=final_headers(prepared, gen.finished, _compute_type(request)),
    )


async def _stream(
    request: Request,
    svc: GenerationService,
    prepared: Prepared,
    stops: tuple[str, ...],
    chunk: Any,
    opening: dict[str, Any] | None,
) -> Response:
    items, first = await start_stream(request, svc, prepared)
    headers = (
        first_token_headers(prepared, first.timing, _compute_type(request)) if first.timing else {}
    )
    streamer = StopStreamer(stops)

    async def events() -> AsyncIterator[dict[str, str]]:
        item: StreamItem | None = first
        try:
            if opening is not None:
                yield {"data": json.dumps(opening)}
            while item is not None:
                delta = streamer.push(item.token.text)
                if item.finished is not None:
                    delta += streamer.finish(
                        item.finished.generated_text, item.finished.reason is FinishReason.STOP
                    )
                if delta:
                    yield {"data": json.dumps(chunk(delta, None))}
                if item.finished is not None:
                    yield {"data": json.dumps(chunk("", _finish(item.finished)))}
                    break
                item = await anext(items, None)
            yield {"data": "[DONE]"}
        except ServingError as exc:
            error = {
                "message": exc.message,
                "type": exc.error_type,
                "param": exc.param,
                "code": None,
            }
            yield {"data": json.dumps({"error": error})}
        finally:
            await items.aclose()

    return EventSourceResponse(events(), headers=headers, ping=15)
