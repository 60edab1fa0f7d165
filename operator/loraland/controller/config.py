"""Operator settings: parsed once at start-up (flags over environment) and passed down.

Nothing here reads the environment at import time; ``loraland operator run`` calls
:meth:`OperatorConfig.from_env` once, applies its flags, and hands the result to the
handlers through Kopf's ``memo``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from loraland import __version__

# Third-party runtimes, pinned (a tag that moves under a running cluster is an outage);
# the versions and the CLI tables they were checked against live in one place.
from loraland.controller.upstream import LORAX_IMAGE, VLLM_IMAGE

ENV_PREFIX = "LORALAND_OPERATOR_"

__all__ = ["LORAX_IMAGE", "VLLM_IMAGE", "OperatorConfig"]


def _image(component: str, suffix: str = "") -> str:
    return f"ghcr.io/loraland/{component}:{__version__}{suffix}"


class OperatorConfig(BaseModel):
    """Everything the operator's behaviour depends on besides the resources themselves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trainer_image: str = Field(default_factory=lambda: _image("trainer"))
    trainer_cpu_image: str = Field(default_factory=lambda: _image("trainer", "-cpu"))
    server_image: str = Field(default_factory=lambda: _image("server"))
    server_cpu_image: str = Field(default_factory=lambda: _image("server", "-cpu"))
    #: Runs ``loraland operator relay-progress`` beside the trainer and ``loraland agent``
    #: beside vLLM/LoRAX servers; both need loraland without torch, so the small operator
    #: image fits.
    relay_image: str = Field(default_factory=lambda: _image("operator"))
    lorax_image: str = LORAX_IMAGE
    vllm_image: str = VLLM_IMAGE
    #: HTTP port of the builtin server's container (the Service maps spec.service.port to it).
    server_port: int = Field(default=8080, ge=1, le=65535)
    server_grpc_port: int = Field(default=9090, ge=1, le=65535)
    image_pull_policy: str = Field(default="IfNotPresent", pattern="^(Always|IfNotPresent|Never)$")

    #: How often the operator re-reads each AdapterDeployment's servers (seconds).
    adapter_poll_seconds: float = Field(default=10.0, gt=0)
    #: Per-request timeout when asking a server pod for its adapters (seconds).
    adapter_poll_timeout: float = Field(default=2.0, gt=0)
    #: Safety-net resync of unfinished FineTuneJobs, on top of watch events (seconds).
    resync_seconds: float = Field(default=30.0, gt=0)
    #: Kopf worker threads for the (blocking) Kubernetes client calls.
    max_workers: int = Field(default=20, ge=1)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> OperatorConfig:
        """``LORALAND_OPERATOR_<FIELD>`` variables, then ``overrides`` (flags) on top."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw:
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)
