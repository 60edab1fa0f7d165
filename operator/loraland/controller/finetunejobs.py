"""FineTuneJob lifecycle: create the children, follow the Job, deploy the adapter.

``ensure`` makes the children exist (idempotent: a child that exists is adopted, so an
operator restart never makes a second Job). ``sync`` recomputes the operator-owned part
of the status from the Job and its pods (:mod:`loraland.controller.jobstatus`) and writes
it with the resourceVersion it read, so a stale writer gets a conflict and re-reads
instead of overwriting newer news. When the job has succeeded and names
``deployTo``, ``sync`` adds the adapter to that AdapterDeployment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException

from loraland.api.finetunejob import FineTuneJobSpec
from loraland.api.status import (
    FINETUNEJOB_TRANSITIONS,
    FineTuneJobConditionType,
    FineTuneJobPhase,
    FineTuneJobStatus,
    ScoresStatus,
    find_condition,
    is_terminal,
    next_phase,
    set_condition,
    utc_now,
)
from loraland.controller.config import OperatorConfig
from loraland.controller.errors import RetryLater, SpecRejected
from loraland.controller.jobstatus import next_status, observe, result_from_pods
from loraland.controller.kube import Kube
from loraland.controller.names import FINETUNEJOB_LABEL, job_name, label_value
from loraland.controller.podspec import Owner
from loraland.controller.runtimerules import deploy_problem
from loraland.controller.trainjob import adapter_name, build_children, describe
from loraland.validation import FINETUNEJOB, Meta

log = logging.getLogger("loraland.operator")

FTJ = ("loraland.dev/v1alpha1", "FineTuneJob")
ADEP = ("loraland.dev/v1alpha1", "AdapterDeployment")
Manifest = dict[str, Any]
#: (object, event type, reason, message) -> posts a Kubernetes Event.
Emit = Callable[[Manifest, str, str, str], None]

#: The fields of status this module writes; progress, adapter and scores are the relay's
#: (adapter/scores are written here only from the termination-message fallback).
OWNED = (
    "phase",
    "message",
    "observedGeneration",
    "conditions",
    "jobName",
    "startTime",
    "completionTime",
    "deployedTo",
    "adapter",
    "scores",
)


def validate_spec(raw: object, meta: Meta | None = None) -> FineTuneJobSpec:
    """The spec, or :class:`SpecRejected` naming every bad field (``spec.x.y: why; ...``)."""
    checked = FINETUNEJOB(raw, meta)
    if checked.spec is None or not checked.ok:
        raise SpecRejected(checked.message)
    return checked.spec


def status_patch(old: FineTuneJobStatus, new: FineTuneJobStatus) -> Manifest:
    """The owned fields that differ (None deletes a field in a merge patch)."""
    before, after = old.to_wire(), new.to_wire()
    return {k: after.get(k) for k in OWNED if after.get(k) != before.get(k)}


def with_adapter(adapters: list[Manifest], name: str, uri: str) -> list[Manifest] | None:
    """``spec.adapters`` with ``name`` serving ``uri``; None when already so."""
    for entry in adapters:
        if entry.get("name") == name:
            if entry.get("uri") == uri and not entry.get("fromFineTuneJob"):
                return None
            return [{"name": name, "uri": uri} if e.get("name") == name else e for e in adapters]
    return [*adapters, {"name": name, "uri": uri}]


#: Reasons of a Deployed=False condition that only a spec change can alter.
GAIN_REFUSALS = ("BelowMinGain", "NoBaseScore")


def gain_refusal(scores: ScoresStatus | None, min_gain: float | None) -> tuple[str, str] | None:
    """(reason, message) when ``deployTo.minGain`` keeps the adapter out; None to deploy."""
    if min_gain is None:
        return None
    if scores is None or scores.base is None:
        return (
            "NoBaseScore",
            f"deployTo.minGain is {min_gain:.3f} but the job has no base-model score to "
            "compare with (set evaluation.compareBase: true)",
        )
    gain = scores.adapter - scores.base
    if gain + 1e-9 < min_gain:
        return (
            "BelowMinGain",
            f"not deployed: the adapter scores {scores.adapter:.3f} vs the base model's "
            f"{scores.base:.3f} ({scores.metric}), a gain of {gain:+.3f} < deployTo.minGain "
            f"{min_gain:.3f}",
        )
    return None


class FineTuneJobs:
    def __init__(self, kube: Kube, config: OperatorConfig, emit: Emit) -> None:
        self.kube = kube
        self.config = config
        self.emit = emit

    # ------------------------------------------------------------------- children

    def ensure(self, body: Manifest) -> None:
        owner = Owner.from_body(body)
        status = FineTuneJobStatus.model_validate(body.get("status") or {})
        try:
            spec = validate_spec(body.get("spec"), Meta.of(body.get("metadata")))
        except SpecRejected as exc:
            self._reject(body, status, str(exc))
            raise
        if status.job_name and is_terminal(status.phase):
            self.sync(owner.namespace, owner.name)  # only deployTo may still have work
            return
        for manifest in build_children(owner, spec, self.config):
            obj, created = self.kube.create(manifest)
            if created:
                log.info(
                    "created %s for finetunejob %s/%s",
                    describe(manifest),
                    owner.namespace,
                    owner.name,
                )
            elif manifest["kind"] == "Job":
                refs = obj["metadata"].get("ownerReferences") or []
                if not any(r.get("uid") == owner.uid for r in refs):
                    raise RetryLater(
                        f"Job {manifest['metadata']['name']} belongs to an earlier FineTuneJob "
                        "of the same name and is still being deleted"
                    )
        self.sync(owner.namespace, owner.name, job_created=True)

    def _reject(self, body: Manifest, status: FineTuneJobStatus, message: str) -> None:
        meta = body["metadata"]
        generation = int(meta.get("generation") or 1)
        now = utc_now()
        new = status.model_copy(deep=True)
        new.phase = next_phase(FINETUNEJOB_TRANSITIONS, status.phase, FineTuneJobPhase.FAILED)
        new.message = f"invalid spec: {message}"
        new.observed_generation = generation
        new.conditions = set_condition(
            new.conditions,
            FineTuneJobConditionType.SPEC_VALID,
            "False",
            "InvalidSpec",
            message,
            generation=generation,
            now=now,
        )
        patch = status_patch(status, new)
        if patch:
            self.kube.merge_patch(
                *FTJ, meta["namespace"], meta["name"], {"status": patch}, subresource="status"
            )
        if status.phase != new.phase or patch.get("message"):
            self.emit(body, "Warning", "InvalidSpec", message)

    # --------------------------------------------------------------------- status

    def sync(self, namespace: str, name: str, *, job_created: bool = False) -> None:
        """Recompute and write the status; retries when a newer write slipped in."""
        for _ in range(6):
            body = self.kube.get(*FTJ, namespace, name)
            if body is None:
                return
            try:
                if self._sync_once(body, job_created=job_created):
                    return
            except ApiException as exc:
                if exc.status == 404:
                    return  # deleted since it was read
                if exc.status != 409:
                    raise
        raise RetryLater(f"finetunejob {namespace}/{name}: status kept changing under us", 2)

    def _sync_once(self, body: Manifest, *, job_created: bool) -> bool:
        owner = Owner.from_body(body)
        status = FineTuneJobStatus.model_validate(body.get("status") or {})
        try:
            spec = validate_spec(body.get("spec"), Meta.of(body.get("metadata")))
        except SpecRejected:
            return True  # reported by ensure; nothing runs
        if status.job_name is None and not job_created:
            return True  # ensure has not created the children yet
        current = status.model_copy(deep=True)
        if status.job_name is None and status.phase is FineTuneJobPhase.FAILED:
            # A refused spec was fixed: the job starts over (the table's Failed -> Pending).
            # Only the computation starts from Pending; the patch is diffed against what is
            # stored, so the stored Failed is overwritten.
            current.phase = FineTuneJobPhase.PENDING
        jname = job_name(owner.name)
        job = self.kube.get("batch/v1", "Job", owner.namespace, jname)
        if job is not None and not any(
            r.get("uid") == owner.uid for r in job["metadata"].get("ownerReferences") or []
        ):
            job = None  # an older namesake's Job, on its way out
        pods = self.kube.list(
            "v1", "Pod", owner.namespace, labels={FINETUNEJOB_LABEL: label_value(owner.name)}
        )
        pods = [
            p for p in pods if (p["metadata"].get("labels") or {}).get("job-name") in (None, jname)
        ]
        if job is None and status.job_name and not is_terminal(status.phase):
            # The Job was deleted under a running FineTuneJob: make it again (its pods
            # resume from their checkpoints when the output is on a volume).
            self.ensure_children_only(owner, spec)
            job = self.kube.get("batch/v1", "Job", owner.namespace, jname)
        trainer_phase = status.progress.phase if status.progress else None
        observation = observe(job, pods, trainer_phase)
        fallback = None
        if observation.phase is FineTuneJobPhase.SUCCEEDED and status.adapter is None:
            fallback = result_from_pods(pods)
        now = utc_now()
        generation = owner.generation
        new = next_status(
            current,
            observation,
            generation=generation,
            job_name=jname,
            adapter_name=adapter_name(owner, spec),
            fallback_result=fallback,
            now=now,
        )
        new.conditions = set_condition(
            new.conditions,
            FineTuneJobConditionType.SPEC_VALID,
            "True",
            "Accepted",
            "",
            generation=generation,
            now=now,
        )
        if new.phase is FineTuneJobPhase.SUCCEEDED and spec.deploy_to is not None:
            self._deploy(body, spec, new, now)
        patch = status_patch(status, new)
        if not patch:
            return True
        self.kube.merge_patch(
            *FTJ,
            owner.namespace,
            owner.name,
            {"metadata": {"resourceVersion": body["metadata"]["resourceVersion"]}, "status": patch},
            subresource="status",
        )
        if new.phase != status.phase and new.phase is not None:
            kind = "Warning" if new.phase is FineTuneJobPhase.FAILED else "Normal"
            self.emit(body, kind, new.phase.value, new.message or new.phase.value)
        return True

    def ensure_children_only(self, owner: Owner, spec: FineTuneJobSpec) -> None:
        for manifest in build_children(owner, spec, self.config):
            _, created = self.kube.create(manifest)
            if created:
                log.info(
                    "recreated %s for finetunejob %s/%s",
                    describe(manifest),
                    owner.namespace,
                    owner.name,
                )

    # ------------------------------------------------------------------- deployTo

    def _deploy(
        self, body: Manifest, spec: FineTuneJobSpec, new: FineTuneJobStatus, now: str
    ) -> None:
        """Add the adapter to ``spec.deployTo.adapterDeployment`` (once)."""
        assert spec.deploy_to is not None
        target = spec.deploy_to.adapter_deployment
        owner = Owner.from_body(body)
        refusal = gain_refusal(new.scores, spec.deploy_to.min_gain)
        if new.adapter is None:
            reason, ok, message = "AdapterMissing", False, "the trainer reported no adapter"
        elif new.deployed_to == target:
            return
        elif refusal is not None:
            reason, ok, message = refusal[0], False, refusal[1]
            before = find_condition(new.conditions, FineTuneJobConditionType.DEPLOYED)
            if before is None or before.reason != reason:
                self.emit(body, "Normal", "NotDeployed", message)
        else:
            name = new.adapter.name or adapter_name(owner, spec)
            ok, reason, message = self._add_adapter(
                owner.namespace, target, name, new.adapter.uri, spec.lora.rank
            )
        new.conditions = set_condition(
            new.conditions,
            FineTuneJobConditionType.DEPLOYED,
            "True" if ok else "False",
            reason,
            message,
            generation=owner.generation,
            now=now,
        )
        if ok:
            new.deployed_to = target
            self.emit(body, "Normal", "Deployed", message)

    def _add_adapter(
        self, namespace: str, target: str, name: str, uri: str, rank: int
    ) -> tuple[bool, str, str]:
        """(added, reason, message): the Deployed condition's status, reason and message."""
        for _ in range(5):
            adep = self.kube.get(*ADEP, namespace, target)
            if adep is None:
                missing = f"AdapterDeployment {target} not found in {namespace}"
                return False, "AdapterDeploymentNotFound", missing
            adapters = list((adep.get("spec") or {}).get("adapters") or [])
            # Refuse here, with the reason, what the target's runtime cannot serve: adding
            # it would only turn the AdapterDeployment Failed while this job says Deployed.
            why = deploy_problem(adep.get("spec"), name, uri, rank)
            if why:
                return False, "AdapterUnservable", f"AdapterDeployment {target}: {why}"
            updated = with_adapter(adapters, name, uri)
            if updated is None:
                served = f"adapter {name} already served by AdapterDeployment {target}"
                return True, "AdapterAdded", served
            try:
                self.kube.merge_patch(
                    *ADEP,
                    namespace,
                    target,
                    {
                        "metadata": {"resourceVersion": adep["metadata"]["resourceVersion"]},
                        "spec": {"adapters": updated},
                    },
                )
            except ApiException as exc:
                if exc.status == 409:
                    continue
                if exc.status == 422:
                    refused = f"AdapterDeployment {target} refused adapter {name}: {exc.body}"
                    return False, "AdapterRefused", refused
                raise
            added = f"added adapter {name} ({uri}) to AdapterDeployment {target}"
            return True, "AdapterAdded", added
        return False, "Conflict", f"AdapterDeployment {target} kept changing; will retry"
