"""Per-adapter state of an AdapterDeployment from what its pods report (pure).

Each ready pod is asked for its adapters (see :mod:`loraland.controller.probe`: the
builtin server, or the adapter agent beside vLLM and LoRAX, answers); the
answers, or the reasons a pod could not answer, become :class:`PodReport` values. An
adapter is Loaded only when every ready replica has it loaded, Failed (with the pod's
message) as soon as one replica failed to load it, and Pending otherwise, with a message
that says what it waits for. The phase follows from the replicas and these states.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from loraland.api.status import AdapterDeploymentPhase, AdapterStateStatus

Phase = AdapterDeploymentPhase


@dataclass(frozen=True)
class PodAdapter:
    state: str  # Loaded | Pending | Failed
    message: str = ""


@dataclass(frozen=True)
class PodReport:
    pod: str
    adapters: Mapping[str, PodAdapter] = field(default_factory=dict)
    error: str | None = None  # the pod could not be asked

    @property
    def reachable(self) -> bool:
        return self.error is None


def parse_builtin_adapters(payload: object) -> dict[str, PodAdapter]:
    """``GET /admin/adapters`` of ``loraland serve``: ``{"adapters": [{name, state, message}]}``."""
    items = payload.get("adapters") if isinstance(payload, dict) else payload
    out: dict[str, PodAdapter] = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            state = (
                item.get("state")
                if item.get("state") in ("Loaded", "Pending", "Failed")
                else "Pending"
            )
            out[item["name"]] = PodAdapter(str(state), str(item.get("message") or ""))
    return out


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def aggregate(
    desired: Mapping[str, str],
    waiting: Mapping[str, str],
    reports: Sequence[PodReport],
    *,
    refused: Mapping[str, str] | None = None,
) -> list[AdapterStateStatus]:
    """One :class:`AdapterStateStatus` per adapter of the spec, sorted by name.

    ``refused`` maps adapters the runtime cannot serve (never sent to the pods) to why.
    """
    out: list[AdapterStateStatus] = []
    reachable = [r for r in reports if r.reachable]
    unreachable = [r for r in reports if not r.reachable]
    refused = refused or {}
    for name in sorted({*desired, *waiting, *refused}):
        if name in refused:
            out.append(AdapterStateStatus(name=name, state="Failed", message=refused[name]))
            continue
        if name in waiting:
            out.append(AdapterStateStatus(name=name, state="Pending", message=waiting[name]))
            continue
        uri = desired[name]
        if not reports:
            out.append(
                AdapterStateStatus(
                    name=name, uri=uri, state="Pending", message="no ready server pod"
                )
            )
            continue
        failed = [
            (r.pod, r.adapters[name])
            for r in reachable
            if name in r.adapters and r.adapters[name].state == "Failed"
        ]
        loaded = [
            r.pod for r in reachable if name in r.adapters and r.adapters[name].state == "Loaded"
        ]
        if failed:
            pod, info = failed[0]
            out.append(
                AdapterStateStatus(
                    name=name,
                    uri=uri,
                    state="Failed",
                    message=_short(f"{pod}: {info.message or 'failed to load'}"),
                    loaded_replicas=len(loaded),
                )
            )
            continue
        if len(loaded) == len(reports):
            out.append(
                AdapterStateStatus(
                    name=name, uri=uri, state="Loaded", message="", loaded_replicas=len(loaded)
                )
            )
            continue
        parts = [f"loaded on {len(loaded)}/{len(reports)} ready pods"]
        pending = [
            f"{r.pod}: {r.adapters[name].message}".rstrip(": ")
            for r in reachable
            if name in r.adapters and r.adapters[name].state == "Pending"
        ]
        missing = [r.pod for r in reachable if name not in r.adapters]
        if pending:
            parts.append("loading on " + "; ".join(pending))
        if missing:
            parts.append("not yet listed by " + ", ".join(missing))
        if unreachable:
            parts.append("; ".join(f"{r.pod} unreachable: {r.error}" for r in unreachable))
        out.append(
            AdapterStateStatus(
                name=name,
                uri=uri,
                state="Pending",
                message=_short("; ".join(parts)),
                loaded_replicas=len(loaded),
            )
        )
    return out


def deployment_phase(
    *,
    spec_replicas: int,
    ready: int,
    updated: int,
    exists: bool,
    adapters: Sequence[AdapterStateStatus],
) -> tuple[Phase, str]:
    """The AdapterDeployment phase and a one-line reason."""
    if not exists:
        return Phase.PENDING, "creating the Deployment"
    failed = [a.name for a in adapters if a.state == "Failed"]
    if ready < spec_replicas or updated < spec_replicas:
        if ready == 0:
            return (
                Phase.PENDING if updated == 0 else Phase.PROGRESSING,
                f"0/{spec_replicas} server pods ready",
            )
        return Phase.PROGRESSING, f"{ready}/{spec_replicas} server pods ready"
    if failed:
        return Phase.DEGRADED, "adapters failed to load: " + ", ".join(failed)
    if spec_replicas == 0:
        return Phase.READY, "scaled to zero"
    pending = [a.name for a in adapters if a.state == "Pending"]
    if pending:
        return Phase.READY, f"{ready} server pods ready; adapters pending: " + ", ".join(pending)
    return Phase.READY, f"{ready} server pods ready"
