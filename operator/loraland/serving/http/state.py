"""FastAPI helpers: reach the shared :class:`ServerState`, and notice disconnects."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

from fastapi import Request

from loraland.serving.state import ServerState

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from loraland.serving.runtime import Runtime
    from loraland.serving.service import GenerationService, Prepared, StreamItem

T = TypeVar("T")


def server_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.loraland
    return state


def runtime(request: Request) -> Runtime:
    return server_state(request).require_runtime()


def service(request: Request) -> GenerationService:
    return runtime(request).service


class ClientGone(Exception):
    """The client closed the connection while we were working for it."""


async def unless_disconnected(request: Request, work: Awaitable[T], poll_s: float = 0.2) -> T:
    """Await ``work``; if the client disconnects first, cancel it (freeing its batch row)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=poll_s)
            if done:
                return task.result()
            if await request.is_disconnected():
                raise ClientGone()
    finally:
        if not task.done():
            # cancel() only asks: wait until the work has really stopped, so a caller
            # that cleans up next (closing the generator ``work`` was advancing) does
            # not find it still running ("aclose(): asynchronous generator is already
            # running" instead of ClientGone, and the generator's own cleanup racing).
            task.cancel()
            await asyncio.wait({task})


async def start_stream(
    request: Request, svc: GenerationService, prepared: Prepared
) -> tuple[AsyncGenerator[StreamItem, None], StreamItem]:
    """Submit ``prepared`` and wait for its first item before any response byte is sent.

    Errors before the first token (overload, a failed adapter) then keep their own status
    codes, and a client gone while queued frees its slot.
    """
    active = await svc.start(prepared)
    items = active.items()
    try:
        first = await unless_disconnected(request, anext(items))
    except BaseException:
        await items.aclose()
        raise
    return items, first
