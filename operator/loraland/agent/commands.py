"""``loraland agent``: the adapter agent sidecar (see :mod:`loraland.agent`)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer

from loraland.agent.loop import Agent, AgentConfig, Runtime
from loraland.agent.servers import AdapterServer, LoraxServer, VllmServer
from loraland.settings import Settings


def build_agent(config: AgentConfig, server_url: str) -> Agent:
    server: AdapterServer = (
        LoraxServer(server_url) if config.runtime == "lorax" else VllmServer(server_url)
    )
    return Agent(config, server)


async def serve_agent(agent: Agent, host: str, port: int) -> None:
    import uvicorn

    from loraland.agent.app import create_app

    server = uvicorn.Server(
        uvicorn.Config(create_app(agent), host=host, port=port, log_level="warning")
    )
    loop = asyncio.create_task(agent.run())
    try:
        await server.serve()
    finally:
        loop.cancel()


def agent_command(
    runtime: Annotated[str, typer.Option(help="The server beside the agent: vllm or lorax.")],
    server_url: Annotated[str, typer.Option(help="The server's base URL in this pod.")],
    adapters_file: Annotated[Path, typer.Option(help="The mounted adapters list to follow.")],
    stage_dir: Annotated[Path, typer.Option(help="Volume shared with the server.")],
    port: Annotated[int, typer.Option(help="Port for /ready and /admin/adapters.")] = 8090,
    host: Annotated[str, typer.Option()] = "0.0.0.0",
    max_lora_rank: Annotated[
        int | None, typer.Option(help="The server's --max-lora-rank (refuse larger ranks).")
    ] = None,
    interval: Annotated[float, typer.Option(help="Seconds between passes.")] = 2.0,
    retry: Annotated[
        float, typer.Option(help="Seconds before a failed adapter is retried.")
    ] = 30.0,
) -> None:
    """Stage adapters, load them into this pod's server, and gate its readiness on them."""
    if runtime not in ("vllm", "lorax"):
        raise typer.BadParameter("vllm or lorax", param_hint="--runtime")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    rt: Runtime = "vllm" if runtime == "vllm" else "lorax"
    stage_dir.mkdir(parents=True, exist_ok=True)
    config = AgentConfig(
        runtime=rt,
        adapters_file=adapters_file,
        stage_dir=stage_dir,
        settings=Settings.from_env(),
        max_lora_rank=max_lora_rank,
        interval_s=interval,
        retry_s=retry,
    )
    asyncio.run(serve_agent(build_agent(config, server_url), host, port))
