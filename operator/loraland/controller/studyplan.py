"""FineTuneStudy -> its children and its status (pure builders; tests compare the dicts).

A study owns:

* one FineTuneJob per cell of its matrix (:func:`build_finetunejob`), named by
  :func:`loraland.study.matrix.run_name` so a restarted operator adopts instead of
  duplicating, labelled with the study, base, task and variant, and annotated with the
  attempt number (a failed run that is retried gets a new job of the same name);
* a ConfigMap with the full table as JSON and markdown (:func:`build_results_configmap`);
* with ``spec.deploy``, an AdapterDeployment serving the winners
  (:func:`build_winners_deployment`), once every run has finished.

:func:`schedule` decides which runs start now (at most ``maxParallel`` active, in matrix
order), :func:`retries_due` which failed runs start again, and :func:`next_status` the
status from the table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loraland.api.adapterdeployment import API_VERSION as ADEP_API_VERSION
from loraland.api.finetunejob import API_VERSION as FTJ_API_VERSION
from loraland.api.status import ConditionStatus, set_condition
from loraland.api.study import FineTuneStudySpec, StudyDeploy
from loraland.api.studystatus import (
    ACTIVE_RUN_PHASES,
    TERMINAL_RUN_PHASES,
    FineTuneStudyStatus,
    RunPhase,
    RunRow,
    StudyConditionType,
    StudyPhase,
    StudyTable,
    next_study_phase,
)
from loraland.controller.names import (
    ATTEMPT_ANNOTATION,
    STUDY_BASE_LABEL,
    STUDY_LABEL,
    STUDY_TASK_LABEL,
    STUDY_VARIANT_LABEL,
    common_labels,
    label_value,
    results_configmap_name,
)
from loraland.controller.podspec import Manifest, Owner
from loraland.study.leaderboard import (
    Skipped,
    Winner,
    best_base,
    chosen_base,
    counts,
    per_base,
    per_task,
    winners,
)
from loraland.study.matrix import Run
from loraland.study.report import results_markdown

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
#: Status lists stay short: a study may have hundreds of runs.
FAILED_LIST_LIMIT = 50
MESSAGE_LIMIT = 300
Cond = StudyConditionType


def study_labels(study: str) -> dict[str, str]:
    return {**common_labels("loraland-study", study, "study"), STUDY_LABEL: label_value(study)}


def run_labels(study: str, run: Run) -> dict[str, str]:
    labels = {
        **study_labels(study),
        STUDY_BASE_LABEL: label_value(run.base.name),
        STUDY_TASK_LABEL: label_value(run.task.name),
    }
    if run.variant is not None:
        labels[STUDY_VARIANT_LABEL] = label_value(run.variant.name)
    return labels


def build_finetunejob(owner: Owner, run: Run, attempt: int) -> Manifest:
    meta = owner.metadata(run.name, run_labels(owner.name, run))
    meta["annotations"] = {ATTEMPT_ANNOTATION: str(attempt)}
    return {
        "apiVersion": FTJ_API_VERSION,
        "kind": "FineTuneJob",
        "metadata": meta,
        "spec": run.spec.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


def attempt_of(job: Manifest) -> int:
    raw = (job["metadata"].get("annotations") or {}).get(ATTEMPT_ANNOTATION, "1")
    try:
        return max(1, int(raw))
    except ValueError:
        return 1


def _short(text: str | None) -> str | None:
    if text is None:
        return None
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


def run_row(run: Run, job: Manifest | None, attempts: int) -> RunRow:
    """One table row from the run's FineTuneJob (None: not made yet, or being replaced)."""
    row = RunRow(
        name=run.name,
        base=run.base.name,
        task=run.task.name,
        variant=run.variant.name if run.variant else None,
        attempts=attempts,
    )
    if job is None or job["metadata"].get("deletionTimestamp"):
        return row
    status = job.get("status") or {}
    row.attempts = max(attempts, attempt_of(job))
    row.phase = RunPhase(status.get("phase") or RunPhase.PENDING.value)
    scores = status.get("scores") or {}
    row.metric = scores.get("metric")
    row.base_score = scores.get("base")
    row.adapter_score = scores.get("adapter")
    row.samples = scores.get("samples")
    row.adapter_uri = (status.get("adapter") or {}).get("uri")
    if row.phase is RunPhase.FAILED:
        row.message = _short(status.get("message"))
    return row


def retries_due(rows: Sequence[RunRow], retries: int) -> list[RunRow]:
    """Failed runs that may start again: their job is replaced by a fresh one."""
    return [r for r in rows if r.phase is RunPhase.FAILED and r.attempts <= retries]


def schedule(runs: Sequence[Run], rows: Mapping[str, RunRow], max_parallel: int) -> list[Run]:
    """The queued runs to start now, in matrix order, keeping ``max_parallel`` active.

    Lowering ``maxParallel`` stops nothing that runs: new runs wait until enough finish.
    """
    active = sum(1 for r in rows.values() if r.phase in ACTIVE_RUN_PHASES)
    free = max(0, max_parallel - active)
    queued = [run for run in runs if rows[run.name].phase is RunPhase.QUEUED]
    return queued[:free]


def build_results_configmap(owner: Owner, table: StudyTable) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": owner.metadata(results_configmap_name(owner.name), study_labels(owner.name)),
        "data": {
            RESULTS_JSON: json.dumps(table.to_wire(), indent=1, sort_keys=True) + "\n",
            RESULTS_MD: results_markdown(table),
        },
    }


@dataclass(frozen=True)
class DeployPlan:
    base: str | None
    winners: list[Winner]
    skipped: list[Skipped]

    def message(self, target: str, min_gain: float) -> str:
        if self.base is None:
            return "no base model has a scored run"
        chosen = ", ".join(f"{w.task}={w.run} ({w.gain:+.3f})" for w in self.winners) or "none"
        text = f"base {self.base}, minGain {min_gain:.3f}: deployed {chosen} to {target}"
        if self.skipped:
            text += "; skipped " + "; ".join(f"{s.task}: {s.reason}" for s in self.skipped)
        return _short(text) or text


def deploy_plan(table: StudyTable, deploy: StudyDeploy) -> DeployPlan:
    base = chosen_base(table, deploy.base_model)
    if base is None:
        return DeployPlan(None, [], [])
    chosen, skipped = winners(table, base, deploy.min_gain)
    return DeployPlan(base, chosen, skipped)


def build_winners_deployment(
    owner: Owner, spec: FineTuneStudySpec, plan: DeployPlan
) -> Manifest | None:
    """The AdapterDeployment serving each winning adapter under its task's name."""
    deploy = spec.deploy
    if deploy is None or plan.base is None or not plan.winners:
        return None
    base = next(b for b in spec.base_models if b.name == plan.base)
    base_model: dict[str, Any] = {"uri": base.uri}
    if base.revision:
        base_model["revision"] = base.revision
    if base.secret_ref:
        base_model["secretRef"] = base.secret_ref
    return {
        "apiVersion": ADEP_API_VERSION,
        "kind": "AdapterDeployment",
        "metadata": owner.metadata(deploy.adapter_deployment, study_labels(owner.name)),
        "spec": {
            "baseModel": base_model,
            "runtime": deploy.runtime,
            "replicas": deploy.replicas,
            "resources": deploy.resources.model_dump(mode="json", by_alias=True, exclude_none=True),
            "adapters": [{"name": w.task, "fromFineTuneJob": w.run} for w in plan.winners],
        },
    }


def proposed_phase(rows: Sequence[RunRow]) -> tuple[StudyPhase, str]:
    n = counts(rows)
    total = len(rows)
    done = n.succeeded + n.failed
    if done == total:
        if n.succeeded == 0:
            return StudyPhase.FAILED, f"all {total} runs failed"
        failed = f", {n.failed} failed" if n.failed else ""
        return StudyPhase.COMPLETED, f"{n.succeeded} of {total} runs succeeded{failed}"
    if any(r.phase is not RunPhase.QUEUED for r in rows) or done:
        return (
            StudyPhase.RUNNING,
            f"{done}/{total} runs done, {n.pending + n.running + n.evaluating} active, "
            f"{n.queued} queued",
        )
    return StudyPhase.PENDING, f"{total} runs queued"


def next_status(
    current: FineTuneStudyStatus,
    table: StudyTable,
    *,
    generation: int,
    attempts: Mapping[str, int],
    now: str,
) -> FineTuneStudyStatus:
    """Phase, counts, leaderboard and conditions from the table (deploy is added later)."""
    rows = table.runs
    n = counts(rows)
    new = current.model_copy(deep=True)
    phase, message = proposed_phase(rows)
    new.phase = next_study_phase(current.phase, phase)
    new.message = message
    new.observed_generation = generation
    new.total = len(rows)
    new.counts = n
    new.progress = f"{n.succeeded + n.failed}/{len(rows)}"
    # Never decreases (a merge patch cannot remove keys anyway): FineTuneJobs made per run,
    # for every run that needed more than one, and the failed attempts _retry recorded.
    made = dict(current.attempts)
    for name, count in [*attempts.items(), *((r.name, r.attempts) for r in rows)]:
        if count > 1 or name in made:
            made[name] = max(made.get(name, 0), count)
    new.attempts = dict(sorted(made.items()))
    new.retries = sum(max(0, v - 1) for v in made.values())
    failed = [r.name for r in rows if r.phase is RunPhase.FAILED]
    new.failed_runs = failed[:FAILED_LIST_LIMIT]
    new.best_base = best_base(table)
    new.bases = per_base(table)
    new.tasks = per_task(table)
    new.results_config_map = results_configmap_name(table.study)
    complete = all(r.phase in TERMINAL_RUN_PHASES for r in rows)
    conditions = set_condition(
        new.conditions, Cond.SPEC_VALID, "True", "Accepted", "", generation=generation, now=now
    )
    conditions = set_condition(
        conditions,
        Cond.COMPLETE,
        "True" if complete else "False",
        "AllRunsFinished" if complete else "RunsInProgress",
        message,
        generation=generation,
        now=now,
    )
    conditions = set_condition(
        conditions,
        Cond.RUNS_FAILED,
        "True" if failed else "False",
        "RunFailed" if failed else "NoFailures",
        _short(f"{len(failed)} failed: {', '.join(failed)}") or "" if failed else "",
        generation=generation,
        now=now,
    )
    new.conditions = conditions
    return new


def with_deploy(
    status: FineTuneStudyStatus,
    plan: DeployPlan | None,
    deploy: StudyDeploy,
    *,
    applied: bool,
    generation: int,
    now: str,
) -> FineTuneStudyStatus:
    """The Deployed condition (and deployedTo) for ``spec.deploy``."""
    new = status.model_copy(deep=True)
    target = deploy.adapter_deployment
    state: ConditionStatus
    if plan is None:
        state, reason, message = "False", "RunsInProgress", "waits until every run has finished"
    elif not plan.winners:
        state, reason = "False", "NoWinners"
        message = plan.message(target, deploy.min_gain)
    else:
        state = "True" if applied else "False"
        reason = "WinnersDeployed" if applied else "DeployFailed"
        message = plan.message(target, deploy.min_gain)
    if plan is not None and plan.winners and applied:
        new.deployed_to = target
        new.deployed_adapters = [w.task for w in plan.winners]
    new.conditions = set_condition(
        new.conditions, Cond.DEPLOYED, state, reason, message, generation=generation, now=now
    )
    return new


def rejected_status(
    current: FineTuneStudyStatus, message: str, *, generation: int, now: str
) -> FineTuneStudyStatus:
    new = current.model_copy(deep=True)
    new.phase = next_study_phase(current.phase, StudyPhase.FAILED)
    new.message = _short(f"invalid spec: {message}")
    new.observed_generation = generation
    new.conditions = set_condition(
        new.conditions,
        Cond.SPEC_VALID,
        "False",
        "InvalidSpec",
        message[:2000],
        generation=generation,
        now=now,
    )
    return new


def status_patch(old: FineTuneStudyStatus, new: FineTuneStudyStatus) -> Manifest:
    """Top-level status fields that differ (None deletes a field in a merge patch)."""
    before, after = old.to_wire(), new.to_wire()
    keys = set(before) | set(after)
    return {k: after.get(k) for k in sorted(keys) if after.get(k) != before.get(k)}
