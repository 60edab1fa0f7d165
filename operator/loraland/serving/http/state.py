"""FastAPI helpers: reach the shared :class:`ServerState`, and notice disconnects."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

from fastapi import Request

from loraland.serving.state import ServerState

if TYPE_CHECKING:
    from loraland.serving.runtime import Runtime
    from loraland.serving.service import GenerationService

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
                task.cancel()
                raise ClientGone()
    finally:
        if not task.done():
            task.cancel()
