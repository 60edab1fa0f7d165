"""Running the server: HTTP (uvicorn) and gRPC in one event loop, model loaded behind them.

The HTTP port opens first, so Kubernetes probes get ``/health`` 503 while the base model
loads in a worker thread; then the engine starts, the configured adapters load, and
the adapters-file watcher begins polling. One process, one engine, two front ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import dataclass, field

import uvicorn

from loraland import __version__
from loraland.serving.config import ServerConfig
from loraland.serving.http.app import create_app
from loraland.serving.lora.watcher import FILE_ORIGIN, AdaptersFileWatcher
from loraland.serving.runtime import Runtime, build_runtime
from loraland.serving.state import ServerState
from loraland.serving.telemetry import ServingMetrics
from loraland.settings import Settings

log = logging.getLogger(__name__)


def _watcher(runtime: Runtime, config: ServerConfig) -> AdaptersFileWatcher | None:
    if config.adapters_file is None:
        return None
    adapters = runtime.adapters

    def current() -> dict[str, str]:
        return {v.name: v.uri for v in adapters.views() if v.origin == FILE_ORIGIN}

    def add(name: str, uri: str) -> None:
        adapters.add(name, uri, origin=FILE_ORIGIN)

    return AdaptersFileWatcher(
        config.adapters_file,
        current=current,
        add=add,
        remove=adapters.remove,
        interval_s=config.adapters_file_poll_s,
    )


@dataclass
class Server:
    config: ServerConfig
    settings: Settings
    metrics: ServingMetrics = field(default_factory=ServingMetrics)

    def __post_init__(self) -> None:
        self.state = ServerState(config=self.config, metrics=self.metrics, version=__version__)
        self.app = create_app(self.state)
        self.http_port: int | None = None
        self.grpc_port: int | None = None
        self.started = threading.Event()
        self._uvicorn: uvicorn.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def _load(self) -> None:
        try:
            runtime = await asyncio.to_thread(
                build_runtime, self.config, self.settings, self.metrics
            )
        except Exception as exc:  # reported through /health, and logged
            log.exception("loading the base model failed")
            self.state.load_error = f"loading the base model failed: {exc}"
            return
        self.state.runtime = runtime
        watcher = _watcher(runtime, self.config)
        if watcher is not None:
            self._tasks.append(asyncio.create_task(watcher.run()))
        log.info("serving %s", self.config.model_id)

    async def serve(self) -> None:
        uv_config = uvicorn.Config(
            self.app,
            host=self.config.host,
            port=self.config.port,
            log_level="info",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        self._uvicorn = uvicorn.Server(uv_config)
        grpc_server = None
        if self.config.grpc_port is not None:
            from loraland.serving.grpc.servicer import create_server

            grpc_server, self.grpc_port = create_server(
                self.state, self.config.host, self.config.grpc_port
            )
            await grpc_server.start()
        self._tasks.append(asyncio.create_task(self._load()))
        self._tasks.append(asyncio.create_task(self._announce()))
        try:
            await self._uvicorn.serve()
        finally:
            for task in self._tasks:
                task.cancel()
            if grpc_server is not None:
                await grpc_server.stop(grace=2)
            if self.state.runtime is not None:
                await asyncio.to_thread(self.state.runtime.close)

    async def _announce(self) -> None:
        assert self._uvicorn is not None
        while not self._uvicorn.started:
            await asyncio.sleep(0.05)
        with contextlib.suppress(AttributeError, IndexError):
            self.http_port = self._uvicorn.servers[0].sockets[0].getsockname()[1]
        self.started.set()

    def stop(self) -> None:
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True

    def run(self) -> None:
        asyncio.run(self.serve())
