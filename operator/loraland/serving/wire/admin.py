"""Admin API bodies: the adapter list the operator polls to fill AdapterDeployment status."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from loraland.serving.config import check_adapter_name


class AdapterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=200)
    uri: str = Field(min_length=1, max_length=4096)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_adapter_name(value)


class AdapterOut(BaseModel):
    name: str
    uri: str
    state: Literal["Loaded", "Pending", "Failed"]
    message: str
    tier: Literal["device", "host", "disk"] | None
    origin: str
    active_requests: int


class AdapterList(BaseModel):
    adapters: list[AdapterOut]
