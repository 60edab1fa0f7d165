"""Asking server pods which adapters they serve (the network edge; short timeouts).

Everything a probe learns, or the reason it learned nothing, comes back as a
:class:`~loraland.controller.adapterstate.PodReport`; the decisions are made by the pure
functions in :mod:`loraland.controller.adapterstate`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from loraland.controller.adapterstate import PodReport, parse_builtin_adapters


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


async def probe_pods(pods: Sequence[PodTarget], *, timeout: float) -> list[PodReport]:
    """Ask every pod at once; one slow pod costs ``timeout``, not ``timeout * pods``.

    Each target is the builtin server or, for vLLM and LoRAX, the pod's adapter agent;
    both answer ``GET /admin/adapters`` in the same shape. Only reads: loading adapters
    is the pod's own business (its server or agent watches the adapters file).
    """
    if not pods:
        return []
    async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
        return list(await asyncio.gather(*(builtin_report(client, p) for p in pods)))
