"""Admin API bodies: the adapter list the operator polls to fill AdapterDeployment status.

``rank``, ``task`` and ``scores`` were added for the playground; they default to None
(unknown, or an adapter without loraland metadata), so older clients that read the first
fields see the same answers as before.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from loraland.api.adapter import Scores
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
    rank: int | None = Field(default=None, description="LoRA rank (r) of a loaded adapter")
    task: str | None = Field(default=None, description="the task it was fine-tuned for")
    scores: Scores | None = Field(
        default=None, description="base model vs adapter on its task, from loraland.json"
    )


class AdapterList(BaseModel):
    adapters: list[AdapterOut]
