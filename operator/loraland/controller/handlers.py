"""Kopf handlers: a few lines each, all work is in the reconcilers.

:func:`build_registry` registers the handlers on a fresh registry with the intervals
from :class:`~loraland.controller.config.OperatorConfig` (Kopf fixes timer intervals at
registration, so they cannot be module-level decorators reading a global).

What triggers what:

* FineTuneJob created / resumed / spec changed -> ``FineTuneJobs.ensure``;
* a loraland Job changed or was deleted -> ``FineTuneJobs.sync`` of its owner (this is
  how phases follow the Job, and, at start-up, how a restarted operator converges);
* the relay reported the evaluating stage, or the adapter after success -> ``sync``;
* an unfinished FineTuneJob, every ``resync_seconds`` -> ``ensure`` (a deleted
  ConfigMap, Role... comes back);
* AdapterDeployment created / resumed / spec changed, and every
  ``adapter_poll_seconds`` -> ``ensure`` + ``refresh`` (ask the pods);
* a loraland Deployment changed -> ``refresh`` (deleted -> ``ensure``);
* FineTuneStudy created / resumed / spec changed, one of its FineTuneJobs finished, and
  every ``resync_seconds`` while unfinished -> ``FineTuneStudies.reconcile``;
* with the webhook on, a FineTuneJob or AdapterDeployment created or its spec changed ->
  ``admission.refusal`` answers the API server before the object is stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import kopf

from loraland.api.finetunejob import API_GROUP
from loraland.controller.adapterdeployments import AdapterDeployments
from loraland.controller.admission import Kind, refusal, webhook_id
from loraland.controller.errors import RetryLater, SpecRejected
from loraland.controller.finetunejobs import GAIN_REFUSALS, FineTuneJobs
from loraland.controller.names import (
    ADAPTERDEPLOYMENT_LABEL,
    FINETUNEJOB_LABEL,
    MANAGED_BY,
    STUDY_LABEL,
)
from loraland.controller.studies import FineTuneStudies, is_unfinished

VERSION = "v1alpha1"
MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}


def _translate(fn: Callable[[], None]) -> None:
    try:
        fn()
    except SpecRejected as exc:
        raise kopf.PermanentError(str(exc)) from None
    except RetryLater as exc:
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from None


def _owner(body: Any, kind: str) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == kind and str(ref.get("apiVersion", "")).startswith(API_GROUP + "/"):
            return str(ref.get("name"))
    return None


def _needs_sync(body: Any) -> bool:
    """FineTuneJob events the relay causes that change what the operator writes."""
    status = body.get("status") or {}
    phase = status.get("phase")
    stage = (status.get("progress") or {}).get("phase")
    if phase == "Running" and stage in ("evaluating", "publishing"):
        return True
    if phase == "Evaluating" and stage == "training":
        return True
    deploy = (body.get("spec") or {}).get("deployTo")
    deployed = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Deployed"), None
    )
    if (
        deployed
        and deployed.get("reason") in GAIN_REFUSALS
        and deployed.get("observedGeneration") == body.get("metadata", {}).get("generation")
    ):
        return False  # minGain said no for this spec; only a spec change can say yes
    return bool(
        phase == "Succeeded"
        and deploy
        and status.get("adapter")
        and status.get("deployedTo") != deploy.get("adapterDeployment")
    )


def _run_finished(body: Any, **_: Any) -> bool:
    """A study's FineTuneJob reached the end (or went away): a slot is free."""
    return (body.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _unfinished(body: Any, **_: Any) -> bool:
    status = body.get("status") or {}
    if status.get("phase") not in ("Succeeded", "Failed"):
        return True
    return _needs_sync(body)


def register_validation(registry: kopf.OperatorRegistry, kind: Kind) -> None:
    """The validating webhook's handler for ``kind`` (webhook.py publishes the
    configuration that sends the API server's requests here)."""

    @kopf.on.validate(
        API_GROUP,
        VERSION,
        kind.plural,
        id=webhook_id(kind),
        operations=["CREATE", "UPDATE"],
        registry=registry,
    )
    def validate(body: kopf.Body, **kwargs: Any) -> None:
        message = refusal(kind, kwargs.get("operation"), body, kwargs.get("old"))
        if message is not None:
            raise kopf.AdmissionError(message, code=422)


def build_registry(
    ftjs: FineTuneJobs,
    adeps: AdapterDeployments,
    studies: FineTuneStudies,
    *,
    resync: float,
    poll: float,
    validated: Iterable[Kind] = (),
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    for kind in validated:
        register_validation(registry, kind)
    ftj = (API_GROUP, VERSION, "finetunejobs")
    adep = (API_GROUP, VERSION, "adapterdeployments")
    fts = (API_GROUP, VERSION, "finetunestudies")

    # ------------------------------------------------------------- FineTuneJob

    @kopf.on.create(*ftj, registry=registry)
    @kopf.on.resume(*ftj, registry=registry)
    @kopf.on.update(*ftj, field="spec", registry=registry)
    def finetunejob_ensure(body: kopf.Body, **_: Any) -> None:
        _translate(lambda: ftjs.ensure(dict(body)))

    @kopf.on.event(*ftj, registry=registry, when=lambda body, **_: _needs_sync(body))
    def finetunejob_progressed(name: str, namespace: str | None, **_: Any) -> None:
        _translate(lambda: ftjs.sync(namespace or "", name))

    @kopf.timer(*ftj, interval=resync, idle=resync / 2, registry=registry, when=_unfinished)
    def finetunejob_resync(body: kopf.Body, **_: Any) -> None:
        _translate(lambda: ftjs.ensure(dict(body)))

    @kopf.on.event(
        "batch",
        "v1",
        "jobs",
        labels={**MANAGED, FINETUNEJOB_LABEL: kopf.PRESENT},
        registry=registry,
    )
    def job_changed(body: kopf.Body, namespace: str | None, **_: Any) -> None:
        owner = _owner(body, "FineTuneJob")
        if owner is not None and namespace:
            _translate(lambda: ftjs.sync(namespace, owner))

    # -------------------------------------------------------- AdapterDeployment

    @kopf.on.create(*adep, registry=registry)
    @kopf.on.resume(*adep, registry=registry)
    @kopf.on.update(*adep, field="spec", registry=registry)
    async def adapterdeployment_ensure(
        body: kopf.Body, name: str, namespace: str | None, **_: Any
    ) -> None:
        await asyncio.to_thread(_translate, lambda: adeps.ensure(dict(body)))
        await adeps.refresh(namespace or "", name)

    @kopf.timer(*adep, interval=poll, registry=registry)
    async def adapterdeployment_poll(
        body: kopf.Body, name: str, namespace: str | None, **_: Any
    ) -> None:
        await asyncio.to_thread(_translate, lambda: adeps.ensure(dict(body)))
        await adeps.refresh(namespace or "", name)

    @kopf.on.event(
        "apps",
        "v1",
        "deployments",
        labels={**MANAGED, ADAPTERDEPLOYMENT_LABEL: kopf.PRESENT},
        registry=registry,
    )
    async def deployment_changed(
        body: kopf.Body, type: str, namespace: str | None, **_: Any
    ) -> None:
        owner = _owner(body, "AdapterDeployment")
        if owner is None or not namespace:
            return
        if type == "DELETED":
            current = await asyncio.to_thread(
                adeps.kube.get, f"{API_GROUP}/{VERSION}", "AdapterDeployment", namespace, owner
            )
            if current is not None and not current["metadata"].get("deletionTimestamp"):
                await asyncio.to_thread(_translate, lambda: adeps.ensure(current))
        await adeps.refresh(namespace, owner)

    # ------------------------------------------------------------ FineTuneStudy

    @kopf.on.create(*fts, registry=registry)
    @kopf.on.resume(*fts, registry=registry)
    @kopf.on.update(*fts, field="spec", registry=registry)
    def finetunestudy_reconcile(name: str, namespace: str | None, **_: Any) -> None:
        _translate(lambda: studies.reconcile(namespace or "", name))

    @kopf.timer(
        *fts,
        interval=resync,
        idle=resync / 2,
        registry=registry,
        when=lambda body, **_: is_unfinished(body),
    )
    def finetunestudy_resync(name: str, namespace: str | None, **_: Any) -> None:
        _translate(lambda: studies.reconcile(namespace or "", name))

    @kopf.on.event(*ftj, labels={STUDY_LABEL: kopf.PRESENT}, registry=registry)
    def study_run_changed(body: kopf.Body, type: str, namespace: str | None, **_: Any) -> None:
        if type != "DELETED" and not _run_finished(body):
            return
        owner = _owner(body, "FineTuneStudy")
        if owner is not None and namespace:
            _translate(lambda: studies.reconcile(namespace, owner))

    return registry
