"""FineTuneStudy status and the study's results table (the ConfigMap's JSON).

The operator owns the whole status. It is compact on purpose (a study may have hundreds
of runs): counts by phase, a leaderboard per base model and per task, the failed runs,
and where the full table is. The full table (:class:`StudyTable`, one row per run) goes to
a ConfigMap as JSON and markdown; ``loraland study`` writes the same JSON locally, so
``loraland study report`` reads either.

Phases follow one transition table, like the other kinds (see :mod:`loraland.api.status`).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from loraland.api.status import Condition


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_wire(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class StudyPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"


_S = StudyPhase
#: Completed goes back to Running when the matrix grows (a task was added) or a failed run
#: is retried; Failed (an invalid spec, or every run failed) is left when that changes.
STUDY_TRANSITIONS: Mapping[StudyPhase, frozenset[StudyPhase]] = {
    _S.PENDING: frozenset({_S.RUNNING, _S.COMPLETED, _S.FAILED}),
    _S.RUNNING: frozenset({_S.COMPLETED, _S.FAILED}),
    _S.COMPLETED: frozenset({_S.RUNNING, _S.FAILED}),
    _S.FAILED: frozenset({_S.PENDING, _S.RUNNING, _S.COMPLETED}),
}


def next_study_phase(current: StudyPhase | None, proposed: StudyPhase) -> StudyPhase:
    if current is None or current == proposed or proposed in STUDY_TRANSITIONS[current]:
        return proposed
    return current


class RunPhase(StrEnum):
    """A run's state: its FineTuneJob's phase, or Queued before the job exists."""

    QUEUED = "Queued"
    PENDING = "Pending"
    RUNNING = "Running"
    EVALUATING = "Evaluating"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


ACTIVE_RUN_PHASES = frozenset({RunPhase.PENDING, RunPhase.RUNNING, RunPhase.EVALUATING})
TERMINAL_RUN_PHASES = frozenset({RunPhase.SUCCEEDED, RunPhase.FAILED})


class StudyConditionType(StrEnum):
    SPEC_VALID = "SpecValid"
    COMPLETE = "Complete"
    RUNS_FAILED = "RunsFailed"
    DEPLOYED = "Deployed"


# ----------------------------------------------------------------------- results table


class RunRow(_Wire):
    """One cell of the matrix and what its FineTuneJob reported."""

    name: str = Field(description="The FineTuneJob (and adapter) name.")
    base: str
    task: str
    variant: str | None = None
    phase: RunPhase = RunPhase.QUEUED
    metric: str | None = None
    base_score: float | None = None
    adapter_score: float | None = None
    samples: int | None = None
    adapter_uri: str | None = None
    attempts: int = Field(default=0, ge=0, description="FineTuneJobs made for this run.")
    message: str | None = None

    @property
    def gain(self) -> float | None:
        if self.adapter_score is None or self.base_score is None:
            return None
        return self.adapter_score - self.base_score


class TableBase(_Wire):
    name: str
    uri: str
    labels: dict[str, str] = Field(default_factory=dict)


class TableReference(_Wire):
    name: str
    source: str | None = None
    scores: dict[str, float] = Field(default_factory=dict)


class StudyTable(_Wire):
    """Everything a report needs: the matrix's axes, the references, one row per run."""

    study: str
    bases: list[TableBase]
    tasks: list[str]
    variants: list[str] = Field(default_factory=list)
    references: list[TableReference] = Field(default_factory=list)
    runs: list[RunRow]


# ---------------------------------------------------------------------------- status


class RunCounts(_Wire):
    queued: int = 0
    pending: int = 0
    running: int = 0
    evaluating: int = 0
    succeeded: int = 0
    failed: int = 0


class BaseSummary(_Wire):
    """Per base model: the mean adapter score and the mean gain over the base itself."""

    name: str
    mean_score: float | None = None
    mean_gain: float | None = None
    scored: int = Field(default=0, ge=0, description="Runs with a score.")


class TaskSummary(_Wire):
    """Per task: the best run, and the best reference beside it."""

    name: str
    metric: str | None = None
    best_run: str | None = None
    best_base: str | None = None
    best_variant: str | None = None
    best_score: float | None = None
    best_gain: float | None = None
    best_reference: str | None = None
    reference_score: float | None = None


class FineTuneStudyStatus(_Wire):
    """``FineTuneStudy.status``."""

    phase: StudyPhase | None = None
    message: str | None = None
    observed_generation: int | None = Field(default=None, ge=0)
    conditions: list[Condition] = Field(default_factory=list)
    total: int = Field(default=0, ge=0, description="Runs in the matrix.")
    counts: RunCounts = Field(default_factory=RunCounts)
    progress: str | None = Field(default=None, description="'done/total' runs, for kubectl.")
    retries: int = Field(default=0, ge=0, description="Failed runs started again, in all.")
    attempts: dict[str, int] = Field(
        default_factory=dict, description="Run -> FineTuneJobs made, for runs retried."
    )
    failed_runs: list[str] = Field(default_factory=list, description="Runs that failed (first 50).")
    best_base: str | None = Field(default=None, description="Highest mean adapter score.")
    bases: list[BaseSummary] = Field(default_factory=list)
    tasks: list[TaskSummary] = Field(default_factory=list)
    results_config_map: str | None = Field(
        default=None, description="ConfigMap with the full table (results.json, results.md)."
    )
    deployed_to: str | None = None
    deployed_adapters: list[str] = Field(default_factory=list)
