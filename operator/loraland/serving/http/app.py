"""The FastAPI application: routers, and one place that turns errors into responses.

Client mistakes (:class:`ServingError`, request validation) answer in the error shape of
the API family the path belongs to: OpenAI's ``{"error": {...}}`` under ``/v1``, TGI's
``{"error", "error_type"}`` elsewhere. Anything else is a server bug: logged with its
traceback and answered 500, never blamed on the client.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from loraland.serving.errors import ServingError
from loraland.serving.http import admin, metrics, openai, playground, tgi, vllm_lora
from loraland.serving.http.state import ClientGone
from loraland.serving.state import ServerState

log = logging.getLogger(__name__)

_OPENAI_TYPES = {
    "validation": "invalid_request_error",
    "not_found": "invalid_request_error",
    "overloaded": "server_overloaded",
    "generation": "server_error",
}


def _error(
    request: Request, status: int, message: str, kind: str, param: str | None
) -> JSONResponse:
    if request.url.path.startswith("/v1/"):
        code = "model_not_found" if kind == "not_found" else None
        body = {
            "error": {
                "message": message,
                "type": _OPENAI_TYPES.get(kind, kind),
                "param": param,
                "code": code,
            }
        }
        return JSONResponse(body, status_code=status)
    return JSONResponse({"error": message, "error_type": kind}, status_code=status)


def _describe(exc: RequestValidationError) -> tuple[str, str | None]:
    parts = []
    first_param = None
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        first_param = first_param or (loc[-1] if loc else None)
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request", first_param


def create_app(state: ServerState) -> FastAPI:
    app = FastAPI(
        title="loraland serve",
        version=state.version,
        description="Multi-LoRA inference: TGI/LoRAX and OpenAI APIs, admin and metrics.",
    )
    app.state.loraland = state

    @app.exception_handler(ServingError)
    async def serving_error(request: Request, exc: ServingError) -> JSONResponse:
        return _error(request, exc.status, exc.message, exc.error_type, exc.param)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _describe(exc)
        return _error(request, 422, message, "validation", param)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, exc: ClientGone) -> Response:
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def server_bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(request, 500, f"internal error: {type(exc).__name__}", "generation", None)

    app.include_router(tgi.router)
    app.include_router(openai.router)
    app.include_router(admin.router)
    app.include_router(metrics.router)
    app.include_router(playground.router)
    app.include_router(vllm_lora.router)
    return app
