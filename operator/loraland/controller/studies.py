"""FineTuneStudy lifecycle: fan the matrix out, follow the jobs, write the leaderboard.

``reconcile`` is the only entry point (spec change, a study job finishing, a timer): it
reads the study and the FineTuneJobs it owns, replaces failed runs that have retries
left, starts queued runs up to ``maxParallel``, writes the results ConfigMap, deploys the
winners once every run has finished, and patches the status with the resourceVersion it
read. Reconciles of one study are serialized (a lock per study): two job events handled
at once must not both see a free slot and both start a run.

Runs are found by name (stable, see :mod:`loraland.study.matrix`) and adopted only when
they carry this study's uid, so a restart never duplicates a job and a namesake left
from a deleted study is waited out.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kubernetes.client.exceptions import ApiException

from loraland.api.status import utc_now
from loraland.api.study import FineTuneStudySpec
from loraland.api.studystatus import (
    TERMINAL_RUN_PHASES,
    FineTuneStudyStatus,
    RunPhase,
    RunRow,
    StudyPhase,
)
from loraland.controller.config import OperatorConfig
from loraland.controller.errors import RetryLater, SpecRejected
from loraland.controller.finetunejobs import FTJ, Emit
from loraland.controller.kube import Kube
from loraland.controller.names import STUDY_LABEL, label_value
from loraland.controller.podspec import Owner
from loraland.controller.studyplan import (
    attempt_of,
    build_finetunejob,
    build_results_configmap,
    build_winners_deployment,
    deploy_plan,
    next_status,
    rejected_status,
    retries_due,
    run_row,
    schedule,
    status_patch,
    with_deploy,
)
from loraland.study.matrix import Run, empty_table, expand
from loraland.validation import FINETUNESTUDY, Meta

log = logging.getLogger("loraland.operator")

FTS = ("loraland.dev/v1alpha1", "FineTuneStudy")
Manifest = dict[str, Any]


def validate(name: str, raw: object) -> tuple[FineTuneStudySpec, list[Run]]:
    """The spec and its runs, or :class:`SpecRejected` naming every bad field (the same
    validator the admission webhook and ``loraland study`` run)."""
    checked = FINETUNESTUDY(raw, Meta(name=name))
    if checked.spec is None or not checked.ok:
        raise SpecRejected(checked.message)
    return checked.spec, expand(name, checked.spec)


def _owned_by(obj: Manifest, uid: str) -> bool:
    return any(r.get("uid") == uid for r in obj["metadata"].get("ownerReferences") or [])


class FineTuneStudies:
    def __init__(self, kube: Kube, config: OperatorConfig, emit: Emit) -> None:
        self.kube = kube
        self.config = config
        self.emit = emit
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock(self, namespace: str, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def reconcile(self, namespace: str, name: str) -> None:
        with self._lock(namespace, name):
            for _ in range(6):
                body = self.kube.get(*FTS, namespace, name)
                if body is None or body["metadata"].get("deletionTimestamp"):
                    return  # the garbage collector removes the children
                try:
                    self._reconcile_once(body)
                    return
                except ApiException as exc:
                    if exc.status != 409:
                        raise
        raise RetryLater(f"finetunestudy {namespace}/{name}: status kept changing under us", 2)

    # ------------------------------------------------------------------ one pass

    def _reconcile_once(self, body: Manifest) -> None:
        owner = Owner.from_body(body)
        status = FineTuneStudyStatus.model_validate(body.get("status") or {})
        now = utc_now()
        try:
            spec, runs = validate(owner.name, body.get("spec"))
        except SpecRejected as exc:
            self._reject(body, status, str(exc), now)
            return
        jobs = self._jobs(owner)
        attempts = dict(status.attempts)
        rows = {
            run.name: run_row(run, jobs.get(run.name), attempts.get(run.name, 0)) for run in runs
        }
        self._retry(body, owner, rows, attempts, spec.retries)
        for run in schedule(runs, rows, spec.max_parallel):
            self._start(owner, run, rows, attempts)
        table = empty_table(owner.name, spec)
        table.runs = [rows[run.name] for run in runs]
        self.kube.apply(build_results_configmap(owner, table))
        new = next_status(status, table, generation=owner.generation, attempts=attempts, now=now)
        if spec.deploy is not None:
            new = self._deploy(owner, spec, table, new, now)
        self._write(body, status, new)

    def _jobs(self, owner: Owner) -> dict[str, Manifest]:
        found = self.kube.list(*FTJ, owner.namespace, labels={STUDY_LABEL: label_value(owner.name)})
        return {j["metadata"]["name"]: j for j in found if _owned_by(j, owner.uid)}

    def _retry(
        self,
        body: Manifest,
        owner: Owner,
        rows: dict[str, RunRow],
        attempts: dict[str, int],
        retries: int,
    ) -> None:
        due = retries_due(list(rows.values()), retries)
        if not due:
            return
        # Count the attempt in status first: if the operator dies after the delete, the
        # next one still knows this run already failed that many times.
        for row in due:
            attempts[row.name] = row.attempts
        self.kube.merge_patch(
            *FTS,
            owner.namespace,
            owner.name,
            {"status": {"attempts": {r.name: r.attempts for r in due}}},
            subresource="status",
        )
        for row in due:
            log.info("study %s/%s: retrying run %s", owner.namespace, owner.name, row.name)
            self.kube.delete(*FTJ, owner.namespace, row.name)
            self.emit(
                body,
                "Warning",
                "RunRetried",
                f"run {row.name} failed (attempt {row.attempts}): {row.message or ''}",
            )
            rows[row.name] = row.model_copy(
                update={"phase": RunPhase.QUEUED, "metric": None, "message": None}
            )

    def _start(
        self, owner: Owner, run: Run, rows: dict[str, RunRow], attempts: dict[str, int]
    ) -> None:
        attempt = attempts.get(run.name, 0) + 1
        obj, created = self.kube.create(build_finetunejob(owner, run, attempt))
        if created:
            log.info(
                "study %s/%s: started run %s (attempt %d)",
                owner.namespace,
                owner.name,
                run.name,
                attempt,
            )
            rows[run.name] = rows[run.name].model_copy(
                update={"phase": RunPhase.PENDING, "attempts": attempt}
            )
        elif not _owned_by(obj, owner.uid) or obj["metadata"].get("deletionTimestamp"):
            # A namesake (an earlier study's, or this run's failed attempt) on its way out.
            return
        else:
            rows[run.name] = run_row(run, obj, attempt_of(obj))

    def _deploy(
        self,
        owner: Owner,
        spec: FineTuneStudySpec,
        table: Any,
        new: FineTuneStudyStatus,
        now: str,
    ) -> FineTuneStudyStatus:
        assert spec.deploy is not None
        finished = all(r.phase in TERMINAL_RUN_PHASES for r in table.runs)
        if not finished:
            return with_deploy(
                new, None, spec.deploy, applied=False, generation=owner.generation, now=now
            )
        plan = deploy_plan(table, spec.deploy)
        manifest = build_winners_deployment(owner, spec, plan)
        applied = False
        if manifest is not None:
            try:
                self.kube.apply(manifest)
                applied = True
            except ApiException as exc:
                if exc.status not in (409, 422):
                    raise
                log.warning("study %s: cannot apply %s: %s", owner.name, manifest, exc.body)
        return with_deploy(
            new, plan, spec.deploy, applied=applied, generation=owner.generation, now=now
        )

    # ------------------------------------------------------------------- status

    def _reject(self, body: Manifest, status: FineTuneStudyStatus, message: str, now: str) -> None:
        generation = int(body["metadata"].get("generation") or 1)
        new = rejected_status(status, message, generation=generation, now=now)
        changed = self._write(body, status, new)
        if changed:
            self.emit(body, "Warning", "InvalidSpec", message)

    def _write(self, body: Manifest, old: FineTuneStudyStatus, new: FineTuneStudyStatus) -> bool:
        patch = status_patch(old, new)
        if not patch:
            return False
        meta = body["metadata"]
        self.kube.merge_patch(
            *FTS,
            meta["namespace"],
            meta["name"],
            {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": patch},
            subresource="status",
        )
        if new.phase != old.phase and new.phase is not None:
            kind = "Warning" if new.phase is StudyPhase.FAILED else "Normal"
            self.emit(body, kind, new.phase.value, new.message or new.phase.value)
        for run in sorted(set(new.failed_runs) - set(old.failed_runs)):
            self.emit(body, "Warning", "RunFailed", f"run {run} failed; the others continue")
        if new.deployed_to and (old.deployed_adapters != new.deployed_adapters):
            self.emit(
                body,
                "Normal",
                "Deployed",
                f"{', '.join(new.deployed_adapters)} -> AdapterDeployment {new.deployed_to}",
            )
        return True


def is_unfinished(body: Any) -> bool:
    """Studies the resync timer keeps an eye on."""
    status = body.get("status") or {}
    return status.get("phase") not in (StudyPhase.COMPLETED.value, StudyPhase.FAILED.value) or (
        status.get("observedGeneration") != (body.get("metadata") or {}).get("generation")
    )
