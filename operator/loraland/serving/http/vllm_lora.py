"""vLLM's adapter admin routes on the builtin server, so tools written for vLLM manage it.

``POST /v1/load_lora_adapter`` and ``POST /v1/unload_lora_adapter`` with the request
bodies, answers and status codes of vLLM 0.33.0 (the version loraland pins, see
``loraland.controller.upstream``), read from its source:

- routes and success answers: ``vllm/entrypoints/serve/lora/api_router.py:63-97``: a
  200 whose body is the bare text ``Success: LoRA adapter '<name>' added successfully.``
  (or ``removed``), sent without a content type;
- bodies: ``vllm/entrypoints/serve/lora/protocol.py:7-15`` (``lora_name``, ``lora_path``,
  ``load_inplace``, ``is_3d_lora_weight``; ``lora_name``, ``lora_int_id``), unknown keys
  ignored;
- checks and errors: ``vllm/entrypoints/openai/models/serving.py:167-305``: 400
  ``InvalidUserInput`` for a missing name or path, a name that is the base model's, or a
  name already loaded without ``load_inplace``; 404 ``NotFoundError`` for an adapter
  path with nothing there or an unload of an unknown name; 500 ``InternalServerError``
  when loading fails otherwise. Errors are ``{"error": {"message", "type", "param",
  "code"}}`` (``vllm/entrypoints/serve/engine/protocol.py:79-87``);
- a body that is not JSON, or does not validate, is a 400 ``Bad Request``
  (``vllm/entrypoints/serve/utils/api_utils.py:309`` and
  ``vllm/entrypoints/serve/exception_handling/handlers/validation.py:149-195``).

The load answers once the adapter is loaded (as vLLM's does); a failed load leaves no
registration behind, so the same call can be retried. Adapters loaded here are the admin
API's: the adapters-file watcher leaves them alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from http import HTTPStatus
from pathlib import Path
from typing import TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from loraland.serving.http.state import runtime
from loraland.serving.lora.registry import AdapterExists, AdapterState, UnknownAdapter

router = APIRouter(tags=["vllm"])
M = TypeVar("M", bound=BaseModel)

#: Same origin as ``/admin/adapters``: loaded by an operator of the server, not the file.
ORIGIN = "admin"


class LoadLoRAAdapterRequest(BaseModel):
    lora_name: str
    lora_path: str
    load_inplace: bool = False
    is_3d_lora_weight: bool = False


class UnloadLoRAAdapterRequest(BaseModel):
    lora_name: str
    lora_int_id: int | None = None


def _error(message: str, kind: str, status: HTTPStatus) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": status.value}}
    return JSONResponse(body, status_code=status.value)


def _bad_request(message: str) -> JSONResponse:
    return _error(message, HTTPStatus.BAD_REQUEST.phrase, HTTPStatus.BAD_REQUEST)


async def _parse(request: Request, model: type[M]) -> M | JSONResponse:
    media = request.headers.get("content-type", "").lower().split(";", 1)[0].strip()
    if media != "application/json":
        return _bad_request("Unsupported Media Type: Only 'application/json' is allowed")
    try:
        return model.model_validate(json.loads(await request.body()))
    except (ValueError, ValidationError) as exc:
        return _bad_request(f"validation error: {exc}")


def _success(name: str, verb: str) -> Response:
    return Response(status_code=200, content=f"Success: LoRA adapter '{name}' {verb} successfully.")


def _missing_local_path(path: str) -> bool:
    """A plain path (no scheme) with nothing there: vLLM's LoRAAdapterNotFoundError."""
    return "://" not in path and not Path(path).expanduser().exists()


@router.post("/v1/load_lora_adapter")
async def load_lora_adapter(request: Request) -> Response:
    body = await _parse(request, LoadLoRAAdapterRequest)
    if isinstance(body, JSONResponse):
        return body
    name, path = body.lora_name, body.lora_path
    if not name or not path:
        return _error(
            "Both 'lora_name' and 'lora_path' must be provided.",
            "InvalidUserInput",
            HTTPStatus.BAD_REQUEST,
        )
    rt = runtime(request)
    if name in (rt.config.model_id, rt.config.base_model):
        return _error(
            f"The lora adapter '{name}' conflicts with a served base model.",
            "InvalidUserInput",
            HTTPStatus.BAD_REQUEST,
        )
    adapters = rt.adapters
    current = adapters.get(name)
    if current is not None and not body.load_inplace:
        return _error(
            f"The lora adapter '{name}' has already been loaded. If you want to load the "
            "adapter in place, set 'load_inplace' to True.",
            "InvalidUserInput",
            HTTPStatus.BAD_REQUEST,
        )
    if _missing_local_path(path):
        return _error(
            f"Loading lora {name} failed: No adapter found for {path}",
            "NotFoundError",
            HTTPStatus.NOT_FOUND,
        )
    try:
        if current is not None:
            adapters.remove(name)
        future = adapters.add(name, path, origin=ORIGIN)
    except (AdapterExists, UnknownAdapter) as exc:
        return _error(str(exc), "InternalServerError", HTTPStatus.INTERNAL_SERVER_ERROR)
    view = await asyncio.wrap_future(future)
    if view.state is AdapterState.FAILED:
        # vLLM never registers an adapter that failed to load: leave nothing behind.
        with contextlib.suppress(UnknownAdapter):
            adapters.remove(name)
        return _error(view.message, "InternalServerError", HTTPStatus.INTERNAL_SERVER_ERROR)
    return _success(name, "added")


@router.post("/v1/unload_lora_adapter")
async def unload_lora_adapter(request: Request) -> Response:
    body = await _parse(request, UnloadLoRAAdapterRequest)
    if isinstance(body, JSONResponse):
        return body
    name = body.lora_name
    if not name:
        return _error(
            "'lora_name' needs to be provided to unload a LoRA adapter.",
            "InvalidUserInput",
            HTTPStatus.BAD_REQUEST,
        )
    try:
        runtime(request).adapters.remove(name)
    except UnknownAdapter:
        return _error(
            f"The lora adapter '{name}' cannot be found.",
            "NotFoundError",
            HTTPStatus.NOT_FOUND,
        )
    return _success(name, "removed")
