"""``GET /metrics``: the Prometheus text format of this server's own registry."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from loraland.serving.http.state import server_state
from loraland.serving.telemetry import CONTENT_TYPE

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    state = server_state(request)
    if state.runtime is not None:
        state.runtime.adapters.refresh_metrics()
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)
