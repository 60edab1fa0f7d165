"""TGI / LoRAX routes: ``/generate``, ``/generate_stream``, ``POST /``, ``/health``, ``/info``.

``POST /`` is what the ``text-generation`` and ``lorax-client`` libraries call: with
``stream: false`` it answers a JSON *array* of one result, with ``stream: true`` the same
server-sent events as ``/generate_stream``. Streams start only after the first token, so
an overloaded server or a broken adapter still answers with its own status code.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse

from loraland.serving.engine.request import FinishReason, Token
from loraland.serving.errors import InvalidRequest, ServingError
from loraland.serving.http.state import (
    runtime,
    server_state,
    service,
    start_stream,
    unless_disconnected,
)
from loraland.serving.http.timing import final_headers, first_token_headers
from loraland.serving.service import Generation, GenerationService, Prepared, StreamItem
from loraland.serving.wire.tgi import (
    Details,
    ErrorResponse,
    FinishReasonOut,
    GenerateResponse,
    Info,
    InputToken,
    StreamDetails,
    StreamResponse,
    TGIRequest,
    TokenOut,
)

DEFAULT_MAX_NEW_TOKENS = 20

router = APIRouter(tags=["TGI / LoRAX"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        404: "unknown adapter",
        422: "invalid input",
        424: "generation failed (e.g. the adapter failed to load)",
        429: "overloaded",
        503: "the base model is not loaded yet",
    }.items()
}


def _prepare(svc: GenerationService, body: TGIRequest, arrived: float) -> Prepared:
    params = body.parameters
    unsupported = params.unsupported()
    if unsupported:
        raise InvalidRequest(
            f"parameter '{unsupported}' is not supported by this server", param=unsupported
        )
    prepared = svc.prepare(
        body.inputs,
        params.sampling(DEFAULT_MAX_NEW_TOKENS),
        None,
        truncate=params.truncate,
        arrived=arrived,
    )
    prepared.adapter = svc.adapter_for(params.adapter_id, params.adapter_source)
    return prepared


def _finish_reason(reason: FinishReason) -> FinishReasonOut:
    if reason is FinishReason.EOS:
        return "eos_token"
    if reason is FinishReason.STOP:
        return "stop_sequence"
    return "length"


def _token(token: Token) -> TokenOut:
    return TokenOut(
        id=token.id, text=token.text, logprob=token.logprob or 0.0, special=token.special
    )


def _text(body: TGIRequest, generated: str) -> str:
    return body.inputs + generated if body.parameters.return_full_text else generated


def _response(body: TGIRequest, gen: Generation) -> GenerateResponse:
    details = None
    if body.parameters.details or body.parameters.decoder_input_details:
        details = Details(
            finish_reason=_finish_reason(gen.finished.reason),
            prompt_tokens=gen.finished.prompt_tokens,
            generated_tokens=gen.finished.generated_tokens,
            seed=gen.finished.seed,
            prefill=[
                InputToken(id=t.id, text=t.text, logprob=t.logprob) for t in gen.prefill or ()
            ],
            tokens=[_token(t) for t in gen.tokens],
        )
    return GenerateResponse(
        generated_text=_text(body, gen.finished.generated_text), details=details
    )


def _compute_type(request: Request) -> str:
    return "gpu" if runtime(request).device.startswith("cuda") else "cpu"


async def _generate(request: Request, body: TGIRequest, as_list: bool) -> Response:
    arrived = time.monotonic()
    svc = service(request)
    prepared = _prepare(svc, body, arrived)
    gen = await unless_disconnected(request, svc.generate(prepared))
    payload = _response(body, gen).model_dump(mode="json", exclude_none=False)
    headers = final_headers(prepared, gen.finished, _compute_type(request))
    return JSONResponse([payload] if as_list else payload, headers=headers)


def _frame(body: TGIRequest, item: StreamItem) -> StreamResponse:
    done = item.finished
    return StreamResponse(
        token=_token(item.token),
        generated_text=_text(body, done.generated_text) if done else None,
        details=StreamDetails(
            finish_reason=_finish_reason(done.reason),
            prompt_tokens=done.prompt_tokens,
            generated_tokens=done.generated_tokens,
            seed=done.seed,
        )
        if done
        else None,
    )


async def _stream(request: Request, body: TGIRequest) -> Response:
    arrived = time.monotonic()
    svc = service(request)
    prepared = _prepare(svc, body, arrived)
    items, first = await start_stream(request, svc, prepared)
    timing = first.timing
    headers = first_token_headers(prepared, timing, _compute_type(request)) if timing else {}

    async def events() -> AsyncIterator[dict[str, str]]:
        item: StreamItem | None = first
        try:
            while item is not None:
                yield {"data": _frame(body, item).model_dump_json()}
                if item.finished is not None:
                    return
                item = await anext(items, None)
        except ServingError as exc:
            yield {"data": json.dumps({"error": exc.message, "error_type": exc.error_type})}
        finally:
            await items.aclose()

    return EventSourceResponse(events(), headers=headers, ping=15)


@router.post("/generate", response_model=GenerateResponse, responses=_ERRORS)
async def generate(request: Request, body: TGIRequest) -> Response:
    """Generate text (one JSON object)."""
    return await _generate(request, body, as_list=False)


@router.post(
    "/generate_stream",
    responses={200: {"content": {"text/event-stream": {}}, "model": StreamResponse}, **_ERRORS},
)
async def generate_stream(request: Request, body: TGIRequest) -> Response:
    """Generate text as server-sent events, one frame per token."""
    return await _stream(request, body)


@router.post(
    "/",
    response_model=list[GenerateResponse],
    responses={200: {"content": {"text/event-stream": {}}}, **_ERRORS},
)
async def compat_generate(request: Request, body: TGIRequest) -> Response:
    """TGI's compatibility route: a one-element array, or SSE when ``stream`` is true."""
    if body.stream:
        return await _stream(request, body)
    return await _generate(request, body, as_list=True)


@router.get("/health", responses={503: {"model": ErrorResponse}})
async def health(request: Request) -> JSONResponse:
    """200 once the base model is loaded and the engine runs; 503 before."""
    state = server_state(request)
    if state.ready:
        return JSONResponse({"status": "ok"})
    reason = state.load_error or "loading the base model"
    return JSONResponse({"error": reason, "error_type": "overloaded"}, status_code=503)


@router.get("/info", response_model=Info)
async def info(request: Request) -> Info:
    state = server_state(request)
    config = state.config
    rt = state.runtime
    return Info(
        model_id=config.model_id,
        model_dtype=rt.dtype if rt else config.precision,
        model_device_type=(rt.device.split(":")[0] if rt else config.device),
        max_concurrent_requests=config.max_concurrent_requests,
        max_stop_sequences=config.max_stop_sequences,
        max_input_length=config.max_input_tokens,
        max_total_tokens=config.max_total_tokens,
        max_batch_total_tokens=config.batch_token_budget,
        max_batch_prefill_tokens=config.max_batch_prefill_tokens,
        max_batch_size=config.max_batch_size,
        max_loaded_adapters=(rt.adapters.max_lora if rt else (config.max_loaded_adapters or 0)),
        max_lora_rank=config.max_lora_rank,
        version=state.version,
    )
