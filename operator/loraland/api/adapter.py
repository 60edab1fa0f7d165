"""The adapter on disk: PEFT's files plus our metadata.

One format everywhere: ``adapter_config.json`` + ``adapter_model.safetensors`` as
``peft.PeftModel.from_pretrained`` expects, and ``loraland.json`` described by
:class:`AdapterMetadata` beside them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

METADATA_FILE = "loraland.json"
PEFT_CONFIG_FILE = "adapter_config.json"
PEFT_WEIGHTS_FILE = "adapter_model.safetensors"


class Scores(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str
    metric: str
    base: float | None = None
    adapter: float
    samples: int = Field(ge=0)


class AdapterMetadata(BaseModel):
    """What loraland records about an adapter it trained."""

    model_config = ConfigDict(extra="allow")

    format_version: int = 1
    name: str
    base_model: str = Field(description="URI of the base model the adapter was trained on")
    base_model_revision: str | None = None
    task: str | None = None
    dataset: str | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    scores: Scores | None = None
    sha256: str = Field(description="sha256 of adapter_model.safetensors")
    size_bytes: int = Field(ge=0)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    loraland_version: str | None = None
    # Added with the trainer; optional so older files still load.
    prompt_template: str | None = None
    chat_template: bool | None = None
    steps: int | None = Field(default=None, ge=0)
    train_samples: int | None = Field(default=None, ge=0)
    truncated_samples: int | None = Field(default=None, ge=0)
    bad_rows: int | None = Field(default=None, ge=0)
