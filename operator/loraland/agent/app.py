"""The agent's HTTP face: readiness for the kubelet, adapter states for the operator.

``GET /admin/adapters`` answers in the builtin server's shape (``{"adapters": [{name,
uri, state, message}]}``), so the operator reads vLLM and LoRAX pods the way it reads
builtin ones. ``GET /ready`` is the pod's readiness probe: 200 once every required
adapter is loaded, else 503 naming what it waits for. ``GET /health`` is liveness.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from loraland.agent.loop import Agent
from loraland.agent.state import reported_state, waiting_for


def create_app(agent: Agent) -> FastAPI:
    app = FastAPI(title="loraland agent", description="Adapter agent for vLLM and LoRAX pods.")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        body = {
            "ready": agent.ready,
            "waiting": waiting_for(agent.records),
            "server": "up" if agent.server_up else "down",
            "file_error": agent.file_error,
        }
        return JSONResponse(body, status_code=200 if agent.ready else 503)

    @app.get("/admin/adapters")
    async def adapters() -> dict[str, object]:
        return {
            "adapters": [
                {
                    "name": name,
                    "uri": r.uri,
                    "state": reported_state(r),
                    "message": r.message,
                    "path": r.path,
                    "required": r.required,
                }
                for name, r in agent.records.items()
            ],
            "ready": agent.ready,
        }

    return app
