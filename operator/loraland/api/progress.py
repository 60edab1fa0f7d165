"""What a training pod reports, without any Kubernetes API rights.

The trainer prints one :class:`TrainingProgress` JSON line per logging step on stdout and
appends it to ``--progress-file``. When the job ends it writes one compact
:class:`TrainingResult` to ``--result-file`` and prints it as the last stdout line; a job
that fails writes a :class:`TrainingFailure` there instead. In a training pod the progress
relay sidecar (controller/relay.py) tails both files and patches the FineTuneJob's status;
it also copies the result into its termination message (capped at 4096 bytes by the
kubelet), the operator's fallback when no patch got through. All are single-line JSON
with camelCase keys.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

Phase = Literal["loading", "training", "evaluating", "publishing", "done"]

#: The kubelet truncates a termination message beyond this many bytes.
TERMINATION_LOG_LIMIT = 4096


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def to_line(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)


class TrainingProgress(_Wire):
    event: Literal["progress"] = "progress"
    phase: Phase = "training"
    step: int = Field(ge=0)
    total_steps: int = Field(ge=0)
    epoch: float = Field(ge=0)
    loss: float | None = None
    learning_rate: float | None = None
    tokens_per_second: float | None = None
    eta_seconds: float | None = None
    #: Set on every line of an attempt that resumed from a checkpoint (a retried pod).
    resumed_from_step: int | None = Field(default=None, ge=0)


class ResultScores(_Wire):
    task: str | None = None
    metric: str
    base: float | None = None
    adapter: float
    samples: int = Field(ge=0)


class TrainingResult(_Wire):
    event: Literal["result"] = "result"
    adapter_uri: str
    sha256: str
    size_bytes: int = Field(ge=0)
    steps: int = Field(ge=0)
    scores: ResultScores | None = None
    truncated_samples: int = Field(default=0, ge=0)
    bad_rows: int = Field(default=0, ge=0)
    train_samples: int = Field(default=0, ge=0)
    resumed_from_step: int | None = None


class TrainingFailure(_Wire):
    event: Literal["error"] = "error"
    reason: str = Field(description="The error class, e.g. DataError, TrainerError, StorageError")
    message: str = Field(max_length=3000)
