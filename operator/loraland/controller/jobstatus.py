"""A FineTuneJob's phase and conditions from its Job and pods (pure).

The operator reads the Job and its pods and calls :func:`next_status`; everything here
is a function of those dicts and the current status, so every case (pending on a node,
running, evaluating, succeeded, failed with the trainer's reason, Job deleted) is a unit
test. The phase table in :mod:`loraland.api.status` has the last word: an observation
that would move a job backwards (a stale event after Succeeded) changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from loraland.api.progress import TrainingResult
from loraland.api.status import (
    FINETUNEJOB_TRANSITIONS,
    AdapterStatus,
    FineTuneJobConditionType,
    FineTuneJobPhase,
    FineTuneJobStatus,
    ScoresStatus,
    next_phase,
    result_status,
    set_condition,
)
from loraland.controller.trainjob import RELAY_CONTAINER, TRAINER_CONTAINER

Manifest = dict[str, Any]
Phase = FineTuneJobPhase
Cond = FineTuneJobConditionType

#: Keep status messages short enough for ``kubectl describe`` and events.
MESSAGE_LIMIT = 600


@dataclass(frozen=True)
class Observation:
    """What the Job and its pods say, before the transition table is consulted."""

    phase: Phase
    reason: str
    message: str
    start_time: str | None = None
    completion_time: str | None = None


def _tail(text: str, limit: int = MESSAGE_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else "..." + text[-(limit - 3) :]


def _job_condition(job: Manifest, type_: str) -> Manifest | None:
    for cond in job.get("status", {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return dict(cond)
    return None


def _container_status(pod: Manifest, name: str) -> Manifest | None:
    status = pod.get("status", {})
    for entry in (status.get("containerStatuses") or []) + (
        status.get("initContainerStatuses") or []
    ):
        if entry.get("name") == name:
            return dict(entry)
    return None


def _by_creation(pods: Sequence[Manifest]) -> list[Manifest]:
    return sorted(
        pods, key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"])
    )


def pod_failure(pod: Manifest) -> str | None:
    """Why a failed pod failed, in the trainer's words when it left any."""
    trainer = _container_status(pod, TRAINER_CONTAINER)
    terminated = ((trainer or {}).get("state") or {}).get("terminated")
    if terminated and terminated.get("exitCode", 0) != 0:
        text = f"trainer exited with code {terminated.get('exitCode')}"
        if terminated.get("reason"):
            text += f" ({terminated['reason']})"
        if terminated.get("message"):
            text += f": {terminated['message']}"
        return _tail(text)
    status = pod.get("status", {})
    if status.get("phase") == "Failed":
        reason = status.get("reason") or "PodFailed"
        return _tail(
            f"pod {pod['metadata']['name']} failed ({reason}): {status.get('message', '')}".rstrip(
                ": "
            )
        )
    return None


def _last_failure(ordered: Sequence[Manifest]) -> str | None:
    return next((r for p in reversed(ordered) if (r := pod_failure(p))), None)


def pod_waiting(pod: Manifest) -> str | None:
    """Why a pod is not running yet (unschedulable, image pull...), if it says."""
    status = pod.get("status", {})
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return _tail(f"{cond.get('reason', 'Unschedulable')}: {cond.get('message', '')}")
    for entry in (status.get("initContainerStatuses") or []) + (
        status.get("containerStatuses") or []
    ):
        waiting = (entry.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
            return _tail(f"{entry['name']}: {waiting['reason']}: {waiting.get('message', '')}")
    return None


def observe(
    job: Manifest | None, pods: Sequence[Manifest], trainer_phase: str | None
) -> Observation:
    """The phase the Job and its pods imply, with a reason and a message."""
    if job is None:
        return Observation(Phase.PENDING, "JobMissing", "the training Job does not exist (yet)")
    status = job.get("status", {})
    start = status.get("startTime")
    ordered = _by_creation(pods)
    if (done := _job_condition(job, "Complete")) is not None:
        return Observation(
            Phase.SUCCEEDED,
            "JobComplete",
            "training finished",
            start,
            status.get("completionTime") or done.get("lastTransitionTime"),
        )
    if (failed := _job_condition(job, "Failed")) is not None:
        pod_reason = _last_failure(ordered)
        job_reason = failed.get("reason") or "JobFailed"
        parts = [f"{job_reason}: {failed.get('message') or 'the Job failed'}"]
        if pod_reason:
            parts.append(f"last pod: {pod_reason}")
        return Observation(
            Phase.FAILED,
            job_reason,
            _tail("; ".join(parts)),
            start,
            failed.get("lastTransitionTime"),
        )
    running = [p for p in ordered if p.get("status", {}).get("phase") == "Running"]
    if running or (status.get("ready") or 0) > 0:
        if trainer_phase in ("evaluating", "publishing"):
            return Observation(Phase.EVALUATING, "Evaluating", "scoring the adapter", start)
        message = "training"
        if retries := status.get("failed") or 0:
            # The failed pod's reason, while it is still there (a deleted pod is not).
            last = _last_failure(ordered)
            if last:
                last = _tail(last, MESSAGE_LIMIT - 64)  # room for the words around it
            message += f" (after {retries} failed pod(s)" + (f"; last: {last})" if last else ")")
        return Observation(Phase.RUNNING, "PodRunning", message, start)
    waiting = next((w for p in reversed(ordered) if (w := pod_waiting(p))), None)
    return Observation(
        Phase.PENDING, "PodPending", waiting or "waiting for the training pod", start
    )


def result_from_pods(pods: Sequence[Manifest]) -> TrainingResult | None:
    """The trainer's result from a termination message, when the relay could not post it.

    The relay writes the result it read into its own termination message as well; the
    trainer's own message is used when someone points ``--result-file`` at
    /dev/termination-log.
    """
    for pod in reversed(_by_creation(pods)):
        for name in (RELAY_CONTAINER, TRAINER_CONTAINER):
            entry = _container_status(pod, name)
            terminated = ((entry or {}).get("state") or {}).get("terminated") or {}
            message = (terminated.get("message") or "").strip()
            if not message.startswith("{"):
                continue
            try:
                return TrainingResult.model_validate_json(message.splitlines()[-1])
            except ValidationError:
                continue
    return None


def next_status(
    current: FineTuneJobStatus,
    observation: Observation,
    *,
    generation: int,
    job_name: str | None,
    adapter_name: str | None,
    fallback_result: TrainingResult | None,
    now: str,
) -> FineTuneJobStatus:
    """The status to write: phase through the table, conditions by the convention."""
    phase = next_phase(FINETUNEJOB_TRANSITIONS, current.phase, observation.phase)
    status = current.model_copy(deep=True)
    status.phase = phase
    status.observed_generation = generation
    status.job_name = job_name or current.job_name
    status.start_time = current.start_time or observation.start_time
    if phase == observation.phase:
        status.message = observation.message
        reason = observation.reason
    else:
        reason = phase.value  # the observation was refused; keep the phase's own story
    if phase in (Phase.SUCCEEDED, Phase.FAILED):
        status.completion_time = current.completion_time or observation.completion_time or now
    if phase is Phase.SUCCEEDED and status.adapter is None and fallback_result is not None:
        adapter, scores = result_status(fallback_result, adapter_name)
        status.adapter = AdapterStatus.model_validate(adapter.model_dump())
        status.scores = None if scores is None else ScoresStatus.model_validate(scores.model_dump())

    conds = status.conditions
    active = phase in (Phase.RUNNING, Phase.EVALUATING)
    conds = set_condition(
        conds,
        Cond.RUNNING,
        "True" if active else "False",
        reason if active else (phase.value if phase != Phase.PENDING else reason),
        status.message or "" if active else "",
        generation=generation,
        now=now,
    )
    conds = set_condition(
        conds,
        Cond.COMPLETE,
        "True" if phase is Phase.SUCCEEDED else "False",
        reason if phase is Phase.SUCCEEDED else "NotComplete",
        status.message or "" if phase is Phase.SUCCEEDED else "",
        generation=generation,
        now=now,
    )
    conds = set_condition(
        conds,
        Cond.FAILED,
        "True" if phase is Phase.FAILED else "False",
        reason if phase is Phase.FAILED else "NotFailed",
        status.message or "" if phase is Phase.FAILED else "",
        generation=generation,
        now=now,
    )
    status.conditions = conds
    return status
