"""AdapterDeployment lifecycle: children by server-side apply, status from the pods.

``ensure`` resolves the adapter list (``fromFineTuneJob`` -> that job's adapter URI and
LoRA rank) and applies the ConfigMap, Deployment and Service; applying the same manifests
again changes nothing, so it runs on every change and on a timer (which is also how a
deleted child comes back and how a job that just succeeded reaches the servers).
``refresh`` asks the ready pods (the builtin server, or the adapter agent beside vLLM and
LoRAX) what they serve and writes replicas, endpoint, per-adapter states, phase and
conditions. Neither loads anything into a server: the pods do that from the ConfigMap.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kubernetes.client.exceptions import ApiException

from loraland.api.adapterdeployment import AdapterDeploymentSpec
from loraland.api.status import (
    ADAPTERDEPLOYMENT_TRANSITIONS,
    AdapterDeploymentConditionType,
    AdapterDeploymentPhase,
    AdapterDeploymentStatus,
    next_phase,
    set_condition,
    utc_now,
)
from loraland.controller.adapterstate import aggregate, deployment_phase
from loraland.controller.admission import kinds
from loraland.controller.config import OperatorConfig
from loraland.controller.errors import SpecRejected
from loraland.controller.finetunejobs import ADEP, FTJ, Emit
from loraland.controller.kube import Kube
from loraland.controller.names import server_name, server_selector
from loraland.controller.podspec import Owner
from loraland.controller.probe import PodTarget, probe_pods
from loraland.controller.runtimerules import adapter_uri_problem
from loraland.controller.runtimes import RuntimePlan, plan
from loraland.controller.serving import (
    ResolvedAdapters,
    build_adapters_configmap,
    build_deployment,
    build_service,
    endpoint,
    optional_adapters,
    resolve_adapters,
    selector_string,
    served_claims,
)
from loraland.validation import ADAPTERDEPLOYMENT, Meta, format_problems

log = logging.getLogger("loraland.operator")
Manifest = dict[str, Any]
Cond = AdapterDeploymentConditionType


def validate(
    raw: object,
    config: OperatorConfig,
    known_ranks: dict[str, int] | None = None,
    meta: Meta | None = None,
) -> tuple[AdapterDeploymentSpec, RuntimePlan]:
    """The spec and its runtime plan, or :class:`SpecRejected` naming every bad field."""
    checked = kinds(config, known_ranks)["AdapterDeployment"].validator(raw, meta)
    if checked.spec is None or not checked.ok:
        raise SpecRejected(format_problems(checked.problems))
    spec: AdapterDeploymentSpec = checked.spec
    return spec, plan(spec, config, known_ranks)


def job_rank(body: Manifest | None) -> int | None:
    """A FineTuneJob's LoRA rank (its spec's ``lora.rank``, default 8), if readable."""
    if body is None:
        return None
    lora = (body.get("spec") or {}).get("lora") or {}
    rank = lora.get("rank", 8)
    return rank if isinstance(rank, int) and rank > 0 else None


def screen(resolved: ResolvedAdapters, spec: AdapterDeploymentSpec) -> dict[str, str]:
    """Resolved adapters the runtime cannot serve (a job's output URI), name -> why."""
    out: dict[str, str] = {}
    for name, uri in resolved.ready.items():
        why = adapter_uri_problem(uri, spec.runtime)
        if why:
            out[name] = f"cannot serve {uri} on runtime {spec.runtime}: {why}"
    return out


def _pod_ready(pod: Manifest) -> bool:
    status = pod.get("status") or {}
    if pod["metadata"].get("deletionTimestamp") or not status.get("podIP"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


class AdapterDeployments:
    def __init__(self, kube: Kube, config: OperatorConfig, emit: Emit) -> None:
        self.kube = kube
        self.config = config
        self.emit = emit

    def resolve(
        self, namespace: str, spec: AdapterDeploymentSpec
    ) -> tuple[ResolvedAdapters, dict[str, int]]:
        """The adapters' URIs, and the ranks of those a FineTuneJob made (name -> rank)."""
        jobs: dict[str, Any] = {}
        ranks: dict[str, int] = {}
        for ref in spec.adapters:
            job = ref.from_fine_tune_job
            if job and job not in jobs:
                body = self.kube.get(*FTJ, namespace, job)
                jobs[job] = None if body is None else (body.get("status") or {})
                rank = job_rank(body)
                if rank is not None:
                    ranks[ref.name] = rank
        return resolve_adapters(spec, jobs), ranks

    def _checked(
        self, body: Manifest
    ) -> tuple[AdapterDeploymentSpec, RuntimePlan, ResolvedAdapters, dict[str, str]]:
        owner = Owner.from_body(body)
        meta = Meta.of(body.get("metadata"))
        parsed = ADAPTERDEPLOYMENT(body.get("spec"), meta)
        if parsed.spec is None:
            raise SpecRejected(parsed.message)
        resolved, ranks = self.resolve(owner.namespace, parsed.spec)
        spec, run = validate(body.get("spec"), self.config, ranks, meta)
        refused = screen(resolved, spec)
        ready = {n: u for n, u in resolved.ready.items() if n not in refused}
        return spec, run, ResolvedAdapters(ready=ready, waiting=resolved.waiting), refused

    def ensure(self, body: Manifest) -> None:
        owner = Owner.from_body(body)
        try:
            spec, run, resolved, _ = self._checked(body)
        except SpecRejected as exc:
            self._reject(body, str(exc))
            raise
        claims = served_claims(spec, resolved.ready)
        self.kube.apply(build_adapters_configmap(owner, resolved.ready, optional_adapters(spec)))
        self.kube.apply(build_deployment(owner, spec, run, claims, self.config))
        self.kube.apply(build_service(owner, spec, run))

    def _reject(self, body: Manifest, message: str) -> None:
        meta = body["metadata"]
        status = AdapterDeploymentStatus.model_validate(body.get("status") or {})
        generation = int(meta.get("generation") or 1)
        new = status.model_copy(deep=True)
        new.phase = next_phase(
            ADAPTERDEPLOYMENT_TRANSITIONS, status.phase, AdapterDeploymentPhase.FAILED
        )
        new.message = f"invalid spec: {message}"
        new.observed_generation = generation
        new.conditions = set_condition(
            new.conditions,
            Cond.SPEC_VALID,
            "False",
            "InvalidSpec",
            message,
            generation=generation,
            now=utc_now(),
        )
        self._write(body, status, new)

    def _write(
        self, body: Manifest, old: AdapterDeploymentStatus, new: AdapterDeploymentStatus
    ) -> None:
        before, after = old.to_wire(), new.to_wire()
        patch = {k: after.get(k) for k in set(before) | set(after) if before.get(k) != after.get(k)}
        if not patch:
            return
        meta = body["metadata"]
        try:
            self.kube.merge_patch(
                *ADEP, meta["namespace"], meta["name"], {"status": patch}, subresource="status"
            )
        except ApiException as exc:
            if exc.status == 404:
                return  # deleted since it was read (a Deployment event can trail its owner)
            raise
        if new.phase != old.phase and new.phase is not None:
            kind = (
                "Warning"
                if new.phase in (AdapterDeploymentPhase.FAILED, AdapterDeploymentPhase.DEGRADED)
                else "Normal"
            )
            self.emit(body, kind, new.phase.value, new.message or new.phase.value)

    async def refresh(self, namespace: str, name: str) -> None:
        """Read the Deployment and ask the ready pods; write the status."""
        body = await asyncio.to_thread(self.kube.get, *ADEP, namespace, name)
        if body is None:
            return
        owner = Owner.from_body(body)
        try:
            spec, run, resolved, refused = await asyncio.to_thread(self._checked, body)
        except SpecRejected:
            return  # ensure reported it
        deployment = await asyncio.to_thread(
            self.kube.get, "apps/v1", "Deployment", namespace, server_name(owner.name)
        )
        pods = await asyncio.to_thread(
            self.kube.list, "v1", "Pod", namespace, labels=server_selector(owner.name)
        )
        ready_pods = sorted((p for p in pods if _pod_ready(p)), key=lambda p: p["metadata"]["name"])
        targets = [
            PodTarget(p["metadata"]["name"], p["status"]["podIP"], run.admin_port)
            for p in ready_pods
        ]
        reports = await probe_pods(targets, timeout=self.config.adapter_poll_timeout)
        adapters = aggregate(resolved.ready, resolved.waiting, reports, refused=refused)
        dstatus = (deployment or {}).get("status") or {}
        ready = int(dstatus.get("readyReplicas") or 0)
        updated = int(dstatus.get("updatedReplicas") or 0)
        phase, message = deployment_phase(
            spec_replicas=spec.replicas,
            ready=ready,
            updated=updated,
            exists=deployment is not None,
            adapters=adapters,
        )
        old = AdapterDeploymentStatus.model_validate(body.get("status") or {})
        new = old.model_copy(deep=True)
        generation = owner.generation
        now = utc_now()
        new.phase = next_phase(ADAPTERDEPLOYMENT_TRANSITIONS, old.phase, phase)
        new.message = message
        new.observed_generation = generation
        new.replicas = int(dstatus.get("replicas") or 0)
        new.ready_replicas = ready
        new.selector = selector_string(owner)
        new.endpoint = endpoint(owner, spec)
        new.runtime = spec.runtime
        new.adapters = adapters
        new.adapters_loaded = f"{sum(a.state == 'Loaded' for a in adapters)}/{len(adapters)}"
        conds = set_condition(
            new.conditions, Cond.SPEC_VALID, "True", "Accepted", "", generation=generation, now=now
        )
        available = deployment is not None and ready >= spec.replicas
        conds = set_condition(
            conds,
            Cond.AVAILABLE,
            "True" if available else "False",
            "ReplicasReady" if available else "ReplicasNotReady",
            f"{ready}/{spec.replicas} server pods ready",
            generation=generation,
            now=now,
        )
        not_loaded = [a for a in adapters if a.state != "Loaded"]
        conds = set_condition(
            conds,
            Cond.ADAPTERS_READY,
            "False" if not_loaded else "True",
            ("AdapterFailed" if any(a.state == "Failed" for a in not_loaded) else "AdaptersPending")
            if not_loaded
            else "AllLoaded",
            "; ".join(f"{a.name}: {a.state}" for a in not_loaded)[:500],
            generation=generation,
            now=now,
        )
        new.conditions = conds
        await asyncio.to_thread(self._write, body, old, new)
