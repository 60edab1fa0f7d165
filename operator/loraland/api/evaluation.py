"""The JSON report ``loraland eval`` writes: one score per model on one task."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ModelResult(_Wire):
    name: str = Field(description="'base' or the adapter's name")
    uri: str
    score: float
    samples: int = Field(ge=0)
    seconds: float = Field(ge=0)


class SampleOutput(_Wire):
    prompt: str
    reference: str
    predictions: dict[str, str]


class EvalReport(_Wire):
    task: str
    metric: str
    source: str
    samples: int = Field(ge=0)
    base_model: str
    results: list[ModelResult]
    examples: list[SampleOutput] = Field(default_factory=list)
