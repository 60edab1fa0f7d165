"""Client disconnects before the first token: the work stops, and the caller hears ClientGone.

The stream's generator is advanced inside a task; a disconnect cancels that task. Closing
the generator before the cancelled task has really finished used to raise "aclose():
asynchronous generator is already running" (a 500 and a logged traceback) instead of
ClientGone, with the generator's cleanup (which frees the engine row) racing it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any, cast

import pytest
from loraland.serving.http.state import ClientGone, start_stream, unless_disconnected


class _Request:
    """What the helpers use of a Starlette request: whether the client went away."""

    def __init__(self, gone_after: int) -> None:
        self.polls = 0
        self.gone_after = gone_after

    async def is_disconnected(self) -> bool:
        self.polls += 1
        return self.polls > self.gone_after


class _Active:
    def __init__(self, first_token: asyncio.Event) -> None:
        self.first_token = first_token
        self.closed = False

    async def items(self) -> AsyncGenerator[str, None]:
        try:
            await self.first_token.wait()
            yield "token"
        finally:
            self.closed = True  # ActiveRequest.close() cancels the engine request here


class _Service:
    def __init__(self, active: _Active) -> None:
        self.active = active

    async def start(self, prepared: object) -> _Active:
        return self.active


def _stream(request: _Request, active: _Active) -> Any:
    return start_stream(cast(Any, request), cast(Any, _Service(active)), cast(Any, None))


@pytest.mark.timeout(30)
async def test_disconnect_before_the_first_token_is_client_gone_and_closes_the_stream() -> None:
    active = _Active(asyncio.Event())
    with pytest.raises(ClientGone):
        await _stream(_Request(gone_after=1), active)
    # Closed by the time the caller hears of it, not at some later loop iteration.
    assert active.closed


@pytest.mark.timeout(30)
async def test_first_token_before_any_disconnect_is_returned() -> None:
    event = asyncio.Event()
    event.set()
    active = _Active(event)
    items, first = await _stream(_Request(gone_after=1000), active)
    assert first == "token" and not active.closed
    await items.aclose()
    assert active.closed


@pytest.mark.timeout(30)
async def test_a_cancelled_handler_stops_its_work_before_returning() -> None:
    active = _Active(asyncio.Event())
    handler = asyncio.ensure_future(_stream(_Request(gone_after=1000), active))
    await asyncio.sleep(0.05)
    handler.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handler
    assert active.closed


@pytest.mark.timeout(30)
async def test_unless_disconnected_cancels_plain_work() -> None:
    stopped = asyncio.Event()

    async def work() -> int:
        try:
            await asyncio.sleep(100)
        finally:
            stopped.set()
        return 1

    with pytest.raises(ClientGone):
        await unless_disconnected(cast(Any, _Request(gone_after=0)), work(), poll_s=0.01)
    assert stopped.is_set()
