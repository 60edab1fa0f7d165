"""Server configuration: one pydantic model, from CLI flags or a YAML/JSON file.

Field names are snake_case; the camelCase spellings AdapterDeployment's ``serving``
block uses (``maxLoadedAdapters``...) are accepted as aliases, so the operator can pass
its spec through unchanged. Limits are checked against each other here, once, so the
engine can trust them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from loraland.serving.errors import ServerConfigError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")


def check_adapter_name(name: str) -> str:
    """Adapter names travel in URLs and file paths: a conservative alphabet, no ``..``."""
    if not _NAME_RE.match(name) or ".." in PurePosixPath(name).parts or name.endswith("/"):
        raise ValueError(
            f"invalid adapter name {name!r}: use letters, digits, '.', '_', '-', '/' "
            "(at most 200 characters, no '..' segment)"
        )
    return name


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, alias_generator=to_camel, frozen=True
    )


class AdapterSource(_Model):
    """An adapter to serve: the name clients use (``adapter_id`` / ``model``) and its URI."""

    name: str
    uri: str = Field(min_length=1)
    #: Read by the adapter agent (readiness gating); the builtin server loads all alike.
    required: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_adapter_name(value)


class ServerConfig(_Model):
    base_model: str = Field(min_length=1, description="URI of the base model")
    served_model_name: str | None = Field(
        None, description="model id on the wire (default: the last part of the base URI)"
    )
    adapters: list[AdapterSource] = Field(default_factory=list)
    adapter_roots: list[Path] = Field(
        default_factory=list, description="directories whose sub-directories load on demand"
    )
    adapters_file: Path | None = Field(
        None, description="YAML/JSON list of {name, uri}, watched for changes"
    )
    adapters_file_poll_s: float = Field(default=2.0, gt=0)

    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535)
    grpc_port: int | None = Field(default=None, ge=0, le=65535, description="unset: no gRPC server")

    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: str = "auto"
    threads: int | None = Field(
        default=None,
        ge=1,
        description="torch CPU threads (default: torch's choice, all visible cores); set it "
        "to the pod's CPU limit, as threads beyond the CPUs really available stall each other",
    )

    max_batch_size: int = Field(default=32, ge=1)
    max_input_tokens: int = Field(default=1024, ge=1)
    max_total_tokens: int = Field(default=2048, ge=2)
    max_batch_total_tokens: int | None = Field(
        None, ge=2, description="KV-cache token budget of one batch (default: derived)"
    )
    max_batch_prefill_tokens: int = Field(default=4096, ge=1)
    prefill_chunk_tokens: int = Field(
        default=256,
        ge=16,
        description="prompts longer than this are prefilled in chunks between decode steps, "
        "so they do not stall the running batch; while rows decode, it also caps the "
        "padded prompt tokens one step prefills",
    )
    max_concurrent_requests: int = Field(default=128, ge=1)
    max_queue_length: int = Field(default=256, ge=0)
    max_stop_sequences: int = Field(default=4, ge=0)
    waiting_served_ratio: float = Field(
        default=0.3, ge=0, description="prefill once this many waiting per running request"
    )
    max_waiting_steps: int = Field(
        default=4, ge=0, description="or once the oldest has waited this many steps"
    )
    max_loaded_adapters: int | None = Field(
        default=None,
        ge=1,
        description="adapters ready for compute (default: as many as adapter_memory_mb holds)",
    )
    max_host_adapters: int | None = Field(
        default=None,
        ge=1,
        description="adapters kept in host memory (default: as many as "
        "host_adapter_memory_mb holds)",
    )
    adapter_memory_mb: float | None = Field(
        default=None,
        gt=0,
        description="device memory for adapter weights when max_loaded_adapters is unset "
        "(default: 10% of the GPU memory free after loading the model; on CPU an eighth "
        "of the available memory, 1024 to 2048, or a quarter where that is under 1024; "
        "available memory respects the cgroup limit)",
    )
    host_adapter_memory_mb: float | None = Field(
        default=None,
        gt=0,
        description="host memory for adapter copies when max_host_adapters is unset "
        "(default: a quarter of the available memory, at most 4096)",
    )
    max_lora_rank: int = Field(default=64, ge=1)

    @model_validator(mode="after")
    def _limits(self) -> ServerConfig:
        if self.max_input_tokens >= self.max_total_tokens:
            raise ValueError(
                f"max_input_tokens ({self.max_input_tokens}) must be below "
                f"max_total_tokens ({self.max_total_tokens})"
            )
        if self.max_batch_total_tokens is not None and (
            self.max_batch_total_tokens < self.max_total_tokens
        ):
            raise ValueError(
                f"max_batch_total_tokens ({self.max_batch_total_tokens}) must be at least "
                f"max_total_tokens ({self.max_total_tokens}), or no request could ever run"
            )
        if (
            self.max_host_adapters is not None
            and self.max_loaded_adapters is not None
            and self.max_host_adapters < self.max_loaded_adapters
        ):
            raise ValueError(
                f"max_host_adapters ({self.max_host_adapters}) must be at least "
                f"max_loaded_adapters ({self.max_loaded_adapters})"
            )
        names = [a.name for a in self.adapters]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"adapter names must be unique; repeated: {', '.join(duplicates)}")
        return self

    @property
    def model_id(self) -> str:
        if self.served_model_name:
            return self.served_model_name
        tail = self.base_model.rstrip("/").rsplit("/", 1)[-1]
        return tail.split("@", 1)[0] or self.base_model

    @property
    def batch_token_budget(self) -> int:
        return self.max_batch_total_tokens or self.max_batch_size * self.max_total_tokens

    @classmethod
    def build(cls, data: dict[str, Any]) -> ServerConfig:
        """Validate ``data``, turning pydantic's errors into one readable line."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ServerConfigError(_describe(exc)) from None

    @classmethod
    def from_file(cls, path: Path, overrides: dict[str, Any] | None = None) -> ServerConfig:
        """Read a YAML or JSON file; ``overrides`` (CLI flags that were given) win."""
        data = read_structured_file(path)
        if not isinstance(data, dict):
            raise ServerConfigError(f"{path}: expected a mapping of settings at the top level")
        return cls.build({**data, **(overrides or {})})


def read_structured_file(path: Path) -> Any:
    """Parse YAML (a superset of JSON) with errors that name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ServerConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ServerConfigError(f"{path}: not valid YAML/JSON: {exc}") from None


def parse_adapter_list(data: Any, origin: str) -> list[AdapterSource]:
    """The adapters file: a list of ``{name, uri}`` (or ``{adapters: [...]}``)."""
    if isinstance(data, dict) and "adapters" in data:
        data = data["adapters"]
    if data is None:
        return []
    if not isinstance(data, list):
        raise ServerConfigError(f"{origin}: expected a list of {{name, uri}} entries")
    try:
        adapters = [AdapterSource.model_validate(item) for item in data]
    except ValidationError as exc:
        raise ServerConfigError(f"{origin}: {_describe(exc)}") from None
    names = [a.name for a in adapters]
    if len(set(names)) != len(names):
        raise ServerConfigError(f"{origin}: adapter names must be unique")
    return adapters


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "config"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
