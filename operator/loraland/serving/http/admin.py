"""Admin routes: list, load and unload adapters.

The operator polls ``GET /admin/adapters`` to fill AdapterDeployment ``status.adapters``.
``POST`` registers and starts loading (202, state Pending); with ``?wait=true`` it answers
once the load ended (201 Loaded, or 422 with the reason it failed).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from loraland.serving.errors import Conflict, InvalidRequest, NotFound
from loraland.serving.http.state import runtime
from loraland.serving.lora.card import AdapterCard
from loraland.serving.lora.registry import AdapterExists, AdapterState, AdapterView, UnknownAdapter
from loraland.serving.wire.admin import AdapterIn, AdapterList, AdapterOut
from loraland.serving.wire.tgi import ErrorResponse

router = APIRouter(prefix="/admin", tags=["admin"])

ADMIN_ORIGIN = "admin"


def _out(view: AdapterView, card: AdapterCard | None) -> AdapterOut:
    # A card left from an earlier load of the same name must not describe a failed one.
    if view.state is not AdapterState.LOADED:
        card = None
    return AdapterOut(
        name=view.name,
        uri=view.uri,
        state=view.state.value,
        message=view.message,
        tier=view.tier.value if view.tier else None,
        origin=view.origin,
        active_requests=view.users,
        rank=card.rank if card else None,
        task=card.task if card else None,
        scores=card.scores if card else None,
    )


@router.get("/adapters", response_model=AdapterList)
async def list_adapters(request: Request) -> AdapterList:
    adapters = runtime(request).adapters
    return AdapterList(adapters=[_out(v, adapters.card(v.name)) for v in adapters.views()])


@router.get(
    "/adapters/{name:path}", response_model=AdapterOut, responses={404: {"model": ErrorResponse}}
)
async def get_adapter(request: Request, name: str) -> AdapterOut:
    adapters = runtime(request).adapters
    view = adapters.get(name)
    if view is None:
        raise NotFound(f"adapter '{name}' is not registered")
    return _out(view, adapters.card(name))


@router.post(
    "/adapters",
    status_code=202,
    response_model=AdapterOut,
    responses={
        201: {"model": AdapterOut},
        409: {"model": ErrorResponse},
        422: {"model": ErrorResponse},
    },
)
async def load_adapter(
    request: Request,
    body: AdapterIn,
    wait: bool = Query(False, description="answer when the load has finished"),
) -> JSONResponse:
    adapters = runtime(request).adapters
    try:
        future = adapters.add(body.name, body.uri, origin=ADMIN_ORIGIN)
    except AdapterExists as exc:
        raise Conflict(str(exc), param="name") from None
    if not wait:
        view = adapters.get(body.name)
        assert view is not None
        return JSONResponse(_out(view, None).model_dump(mode="json"), status_code=202)
    view = await asyncio.wrap_future(future)
    if view.state is AdapterState.FAILED:
        raise InvalidRequest(f"adapter '{body.name}' failed to load: {view.message}", param="uri")
    return JSONResponse(
        _out(view, adapters.card(body.name)).model_dump(mode="json"), status_code=201
    )


@router.delete("/adapters/{name:path}", responses={404: {"model": ErrorResponse}})
async def unload_adapter(request: Request, name: str) -> JSONResponse:
    try:
        runtime(request).adapters.remove(name)
    except UnknownAdapter:
        raise NotFound(f"adapter '{name}' is not registered") from None
    return JSONResponse({"name": name, "removed": True})
