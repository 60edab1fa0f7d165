"""Talking to the server in the agent's own pod (the network edge).

:class:`VllmServer` speaks vLLM's adapter API (``/v1/load_lora_adapter``,
``/v1/unload_lora_adapter``, ``GET /v1/models``), which the builtin server speaks too.
:class:`LoraxServer` has no such API: LoRAX loads an adapter on the first request naming
it, so "load" is a one-token request with ``adapter_id=<staged path>`` and
``adapter_source=local`` (a failure comes back as that request's error), and "unload"
is left to LoRAX's own eviction.
"""

from __future__ import annotations

from typing import Protocol

import httpx

#: Loading can take a while (LoRAX reads the weights on the warm-up request).
LOAD_TIMEOUT_S = 300.0
PROBE_TIMEOUT_S = 5.0


class AdapterServer(Protocol):
    async def healthy(self) -> bool: ...

    async def loaded(self) -> set[str] | None:
        """Adapters the server has now; None when it cannot tell."""
        ...

    async def load(self, name: str, path: str) -> str | None:
        """None when loaded, else why not."""
        ...

    async def unload(self, name: str) -> str | None: ...


def _error_text(response: httpx.Response) -> str:
    """The message of a vLLM (``{"error": {"message"}}``) or TGI (``{"error"}``) error."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    return f"HTTP {response.status_code}: {error or response.text[:300]}"


class _Base:
    def __init__(self, base_url: str, client: httpx.AsyncClient | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = client or httpx.AsyncClient(timeout=PROBE_TIMEOUT_S, trust_env=False)

    async def healthy(self) -> bool:
        try:
            response = await self.client.get(f"{self.base_url}/health")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def aclose(self) -> None:
        await self.client.aclose()


class VllmServer(_Base):
    async def loaded(self) -> set[str] | None:
        try:
            response = await self.client.get(f"{self.base_url}/v1/models")
            response.raise_for_status()
            data = response.json().get("data") or []
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        # LoRA modules are the models with a parent (the base model has none).
        return {str(m["id"]) for m in data if isinstance(m, dict) and m.get("parent")}

    async def load(self, name: str, path: str) -> str | None:
        try:
            response = await self.client.post(
                f"{self.base_url}/v1/load_lora_adapter",
                json={"lora_name": name, "lora_path": path},
                timeout=LOAD_TIMEOUT_S,
            )
        except httpx.HTTPError as exc:
            return f"load request failed: {exc or type(exc).__name__}"
        return None if response.status_code == 200 else _error_text(response)

    async def unload(self, name: str) -> str | None:
        try:
            response = await self.client.post(
                f"{self.base_url}/v1/unload_lora_adapter", json={"lora_name": name}
            )
        except httpx.HTTPError as exc:
            return f"unload request failed: {exc or type(exc).__name__}"
        # 404: already gone, which is what we wanted.
        return None if response.status_code in (200, 404) else _error_text(response)


class LoraxServer(_Base):
    async def loaded(self) -> set[str] | None:
        return None

    async def load(self, name: str, path: str) -> str | None:
        body = {
            "inputs": "Hello",
            "parameters": {"adapter_id": path, "adapter_source": "local", "max_new_tokens": 1},
        }
        try:
            response = await self.client.post(
                f"{self.base_url}/generate", json=body, timeout=LOAD_TIMEOUT_S
            )
        except httpx.HTTPError as exc:
            return f"warm-up request failed: {exc or type(exc).__name__}"
        return None if response.status_code == 200 else _error_text(response)

    async def unload(self, name: str) -> str | None:
        return None  # LoRAX evicts idle adapters itself; the staged link is removed
