"""Asking server pods which adapters they serve (the network edge; short timeouts).

Everything a probe learns, or the reason it learned nothing, comes back as a
:class:`~loraland.controller.adapterstate.PodReport`; the decisions are made by the pure
functions in :mod:`loraland.controller.adapterstate`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

from loraland.controller.adapterstate import (
    PodAdapter,
    PodReport,
    parse_builtin_adapters,
    parse_vllm_models,
    plan_vllm,
)


@dataclass(frozen=True)
class PodTarget:
    name: str
    ip: str
    port: int

    def url(self, path: str) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"http://{host}:{self.port}{path}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    return str(exc) or type(exc).__name__


async def builtin_report(client: httpx.AsyncClient, pod: PodTarget) -> PodReport:
    url = pod.url("/admin/adapters")
    try:
        response = await client.get(url)
        response.raise_for_status()
        return PodReport(pod.name, parse_builtin_adapters(response.json()))
    except (httpx.HTTPError, ValueError) as exc:
        return PodReport(pod.name, error=f"GET {url}: {_describe(exc)}")


async def vllm_report(
    client: httpx.AsyncClient, pod: PodTarget, desired: Mapping[str, str]
) -> PodReport:
    """Bring one vLLM pod to ``desired`` (name -> lora_path) and report what it serves."""
    models_url = pod.url("/v1/models")
    try:
        response = await client.get(models_url)
        response.raise_for_status()
        loaded = parse_vllm_models(response.json())
    except (httpx.HTTPError, ValueError) as exc:
        return PodReport(pod.name, error=f"GET {models_url}: {_describe(exc)}")
    todo = plan_vllm(desired, loaded)
    states: dict[str, PodAdapter] = {n: PodAdapter("Loaded") for n in loaded & set(desired)}
    for name, path in todo.load.items():
        try:
            answer = await client.post(
                pod.url("/v1/load_lora_adapter"), json={"lora_name": name, "lora_path": path}
            )
        except httpx.HTTPError as exc:
            states[name] = PodAdapter("Pending", f"load request failed: {_describe(exc)}")
            continue
        if answer.is_success:
            states[name] = PodAdapter("Loaded")
        else:
            states[name] = PodAdapter("Failed", f"HTTP {answer.status_code}: {answer.text[:200]}")
    for name in todo.unload:
        # A failed unload leaves the adapter listed: the next poll tries again.
        with contextlib.suppress(httpx.HTTPError):
            await client.post(pod.url("/v1/unload_lora_adapter"), json={"lora_name": name})
    return PodReport(pod.name, states)


async def probe_pods(
    runtime_admin: str,
    pods: Sequence[PodTarget],
    desired: Mapping[str, str],
    *,
    timeout: float,
) -> list[PodReport]:
    """Ask every pod at once; one slow pod costs ``timeout``, not ``timeout * pods``."""
    if runtime_admin == "none" or not pods:
        return []
    async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
        if runtime_admin == "vllm":
            jobs = [vllm_report(client, p, desired) for p in pods]
        else:
            jobs = [builtin_report(client, p) for p in pods]
        return list(await asyncio.gather(*jobs))
