"""State shared by the HTTP and gRPC front ends: config, metrics, and the runtime once loaded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from loraland.serving.config import ServerConfig
from loraland.serving.errors import NotReady
from loraland.serving.telemetry import ServingMetrics

if TYPE_CHECKING:
    from loraland.serving.runtime import Runtime


@dataclass
class ServerState:
    config: ServerConfig
    metrics: ServingMetrics
    version: str
    runtime: Runtime | None = None
    load_error: str | None = None

    @property
    def ready(self) -> bool:
        return self.runtime is not None and self.runtime.engine.alive

    def require_runtime(self) -> Runtime:
        """The runtime, or :class:`NotReady` (503 / UNAVAILABLE) while loading."""
        if self.runtime is None or not self.runtime.engine.alive:
            raise NotReady(self.load_error or "the base model is still loading")
        return self.runtime
