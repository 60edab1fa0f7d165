"""Status of FineTuneJob and AdapterDeployment: phases, conditions, progress.

Who writes what (so two writers never fight over one field):

* the operator owns ``phase``, ``conditions``, ``observedGeneration``, ``message``,
  ``jobName``, ``startTime`` and ``completionTime`` (it derives them from the Job and its
  pods, or from the Deployment and the servers' adapter lists);
* the training pod's progress relay owns ``status.progress`` and, at the end,
  ``status.adapter`` and ``status.scores`` (from the trainer's result file).

Each kind has one phase enum and ONE transition table. Code proposes a phase from what it
observes; :func:`next_phase` accepts it only if the table allows the move, so a late or
stale observation can never take a Succeeded job back to Running.

Conditions follow the Kubernetes convention (``metav1.Condition``): ``lastTransitionTime``
changes only when ``status`` flips, and each carries the ``observedGeneration`` of the
spec it was computed from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from loraland.api.progress import Phase as TrainerPhase
from loraland.api.progress import TrainingProgress, TrainingResult


class _Status(BaseModel):
    # Status objects come back from the API server with fields this version may not know
    # (a newer operator wrote them); ignore those instead of failing the reconcile.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_wire(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --------------------------------------------------------------------------- phases


class FineTuneJobPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    EVALUATING = "Evaluating"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class AdapterDeploymentPhase(StrEnum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    READY = "Ready"
    DEGRADED = "Degraded"
    FAILED = "Failed"


_F = FineTuneJobPhase
#: Allowed moves of a FineTuneJob. A job may finish between two observations, so Pending
#: can go straight to Succeeded. Evaluating goes back to Running when the Job retries a
#: pod that failed while scoring (the new pod resumes from its checkpoint). Failed goes
#: back to Pending only for a job that never started: its spec was refused and the user
#: fixed it (the operator never recreates a Job of a job that ran).
FINETUNEJOB_TRANSITIONS: Mapping[FineTuneJobPhase, frozenset[FineTuneJobPhase]] = {
    _F.PENDING: frozenset({_F.RUNNING, _F.EVALUATING, _F.SUCCEEDED, _F.FAILED}),
    _F.RUNNING: frozenset({_F.EVALUATING, _F.SUCCEEDED, _F.FAILED}),
    _F.EVALUATING: frozenset({_F.RUNNING, _F.SUCCEEDED, _F.FAILED}),
    _F.SUCCEEDED: frozenset(),
    _F.FAILED: frozenset({_F.PENDING}),
}

_A = AdapterDeploymentPhase
#: A serving deployment moves freely between its live states as pods come and go; Failed
#: (a spec the operator cannot build) is left only when the spec changes.
ADAPTERDEPLOYMENT_TRANSITIONS: Mapping[
    AdapterDeploymentPhase, frozenset[AdapterDeploymentPhase]
] = {
    _A.PENDING: frozenset({_A.PROGRESSING, _A.READY, _A.DEGRADED, _A.FAILED}),
    _A.PROGRESSING: frozenset({_A.PENDING, _A.READY, _A.DEGRADED, _A.FAILED}),
    _A.READY: frozenset({_A.PENDING, _A.PROGRESSING, _A.DEGRADED, _A.FAILED}),
    _A.DEGRADED: frozenset({_A.PENDING, _A.PROGRESSING, _A.READY, _A.FAILED}),
    _A.FAILED: frozenset({_A.PENDING, _A.PROGRESSING, _A.READY, _A.DEGRADED}),
}

P = TypeVar("P", FineTuneJobPhase, AdapterDeploymentPhase)


def next_phase(table: Mapping[P, frozenset[P]], current: P | None, proposed: P) -> P:
    """``proposed`` if the table allows ``current -> proposed``, else ``current``.

    A resource with no phase yet may take any phase.
    """
    if current is None or current == proposed or proposed in table[current]:
        return proposed
    return current


def is_terminal(phase: FineTuneJobPhase | None) -> bool:
    return phase in (FineTuneJobPhase.SUCCEEDED, FineTuneJobPhase.FAILED)


# ------------------------------------------------------------------------ conditions

ConditionStatus = Literal["True", "False", "Unknown"]


def utc_now() -> str:
    """RFC 3339 with second precision and a Z, as the API server writes times."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Condition(_Status):
    """One ``metav1.Condition``."""

    type: str = Field(description="Condition type, CamelCase (e.g. Complete, Available).")
    status: ConditionStatus
    reason: str = Field(description="One CamelCase word for machines.")
    message: str = Field(default="", description="What happened, for humans.")
    last_transition_time: str = Field(description="When status last changed (RFC 3339).")
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the condition was computed from."
    )


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    generation: int | None,
    now: str,
) -> list[Condition]:
    """Replace (or add) the condition ``type_``; keep its transition time if unchanged."""
    old = next((c for c in conditions if c.type == type_), None)
    since = old.last_transition_time if old is not None and old.status == status else now
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )
    rest = [c for c in conditions if c.type != type_]
    return sorted([*rest, new], key=lambda c: c.type)


def find_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


# ------------------------------------------------------------------- FineTuneJob status


class FineTuneJobConditionType(StrEnum):
    SPEC_VALID = "SpecValid"
    RUNNING = "Running"
    COMPLETE = "Complete"
    FAILED = "Failed"
    DEPLOYED = "Deployed"


class ProgressStatus(_Status):
    """``status.progress``: the trainer's latest progress line, as the relay patched it."""

    phase: TrainerPhase | None = Field(default=None, description="Trainer stage.")
    step: int = Field(default=0, ge=0)
    total_steps: int = Field(default=0, ge=0)
    epoch: float | None = Field(default=None, ge=0)
    loss: float | None = None
    learning_rate: float | None = None
    tokens_per_second: float | None = None
    eta_seconds: float | None = Field(default=None, ge=0)
    eta: str | None = Field(default=None, description="eta_seconds, for people (1h2m3s).")
    percent: int | None = Field(default=None, ge=0, le=100)
    summary: str | None = Field(default=None, description="'step/totalSteps' for kubectl get.")
    resumed_from_step: int | None = Field(
        default=None,
        ge=0,
        description="The checkpoint step this attempt resumed from (a retried trainer pod).",
    )
    updated_at: str | None = None


def format_duration(seconds: float) -> str:
    """``3723`` -> ``1h2m3s``; ``42.4`` -> ``42s``."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h"] if hours else []
    if minutes:
        parts.append(f"{minutes}m")
    if secs or not parts:
        parts.append(f"{secs}s")
    return "".join(parts)


def progress_status(progress: TrainingProgress, *, now: str) -> ProgressStatus:
    """What the relay writes to ``status.progress`` for one trainer progress line."""
    percent = None
    summary = None
    if progress.total_steps:
        percent = min(100, int(100 * progress.step / progress.total_steps))
        summary = f"{progress.step}/{progress.total_steps}"
    return ProgressStatus(
        phase=progress.phase,
        step=progress.step,
        total_steps=progress.total_steps,
        epoch=progress.epoch,
        loss=None if progress.loss is None else round(progress.loss, 4),
        learning_rate=progress.learning_rate,
        tokens_per_second=(
            None if progress.tokens_per_second is None else round(progress.tokens_per_second, 1)
        ),
        eta_seconds=progress.eta_seconds,
        eta=None if progress.eta_seconds is None else format_duration(progress.eta_seconds),
        percent=percent,
        summary=summary,
        resumed_from_step=progress.resumed_from_step,
        updated_at=now,
    )


class AdapterStatus(_Status):
    """``status.adapter``: what the job produced."""

    name: str | None = None
    uri: str
    sha256: str
    size_bytes: int = Field(ge=0)


class ScoresStatus(_Status):
    """``status.scores``: the adapter (and base) on the evaluation task."""

    task: str | None = None
    metric: str
    base: float | None = None
    adapter: float
    samples: int = Field(default=0, ge=0)


def result_status(
    result: TrainingResult, adapter_name: str | None
) -> tuple[AdapterStatus, ScoresStatus | None]:
    """``status.adapter`` and ``status.scores`` from the trainer's result file."""
    adapter = AdapterStatus(
        name=adapter_name,
        uri=result.adapter_uri,
        sha256=result.sha256,
        size_bytes=result.size_bytes,
    )
    scores = None
    if result.scores is not None:
        s = result.scores
        scores = ScoresStatus(
            task=s.task, metric=s.metric, base=s.base, adapter=s.adapter, samples=s.samples
        )
    return adapter, scores


class FineTuneJobStatus(_Status):
    """``FineTuneJob.status``."""

    phase: FineTuneJobPhase | None = None
    message: str | None = Field(default=None, description="Why the job is in its phase.")
    observed_generation: int | None = Field(default=None, ge=0)
    conditions: list[Condition] = Field(default_factory=list)
    job_name: str | None = Field(default=None, description="The batch/v1 Job running it.")
    start_time: str | None = None
    completion_time: str | None = None
    progress: ProgressStatus | None = None
    adapter: AdapterStatus | None = None
    scores: ScoresStatus | None = None
    deployed_to: str | None = Field(
        default=None, description="AdapterDeployment the adapter was added to (deployTo)."
    )


# --------------------------------------------------------------- AdapterDeployment status


class AdapterDeploymentConditionType(StrEnum):
    SPEC_VALID = "SpecValid"
    AVAILABLE = "Available"
    ADAPTERS_READY = "AdaptersReady"


AdapterState = Literal["Loaded", "Pending", "Failed"]


class AdapterStateStatus(_Status):
    """One entry of ``status.adapters``: the adapter's state across the ready replicas."""

    name: str
    uri: str | None = None
    state: AdapterState
    message: str = ""
    loaded_replicas: int = Field(default=0, ge=0)


class AdapterDeploymentStatus(_Status):
    """``AdapterDeployment.status``."""

    phase: AdapterDeploymentPhase | None = None
    message: str | None = None
    observed_generation: int | None = Field(default=None, ge=0)
    conditions: list[Condition] = Field(default_factory=list)
    replicas: int = Field(default=0, ge=0, description="Pods of the Deployment.")
    ready_replicas: int = Field(default=0, ge=0)
    selector: str | None = Field(
        default=None, description="Label selector of the pods (scale subresource, HPA)."
    )
    endpoint: str | None = Field(default=None, description="In-cluster URL of the Service.")
    runtime: str | None = None
    adapters: list[AdapterStateStatus] = Field(default_factory=list)
    adapters_loaded: str | None = Field(
        default=None, description="'loaded/total' adapters, for kubectl get."
    )
