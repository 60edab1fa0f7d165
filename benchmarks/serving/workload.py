"""What the serving benchmarks send: the same base model and prompts on every side."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

BASE_URI = "builtin://smollm2-135m-instruct"
PROMPTS = [
    "Summarise in one sentence why the sky is blue and why sunsets look red.",
    "Write a haiku about a lighthouse keeper who counts the waves every night.",
    "List three practical tips for keeping a sourdough starter healthy in winter.",
    "Explain what a hash table is to a ten year old, using a library as the example.",
]


def tgi_body(prompt: str, new_tokens: int, adapter: str | None) -> dict[str, Any]:
    """A TGI ``/generate_stream`` request that always generates ``new_tokens`` tokens (the
    same stopping rule on every side)."""
    return {
        "inputs": prompt,
        "parameters": {
            "max_new_tokens": new_tokens,
            "ignore_eos_token": True,
            "adapter_id": adapter,
        },
    }


async def token_times(
    client: httpx.AsyncClient, url: str, body: dict[str, Any]
) -> AsyncIterator[float]:
    """``time.monotonic()`` as each token of a ``/generate_stream`` answer arrives."""
    async with client.stream("POST", f"{url}/generate_stream", json=body) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            frame = json.loads(line[5:])
            if "token" in frame:
                yield time.monotonic()
            if frame.get("details"):
                return


@dataclass
class TokenWindow:
    """Tokens that came inside a window (monotonic ``start_at`` to ``end_at``), fed one
    at a time as they stream, so a request cut off at the window's end still counts what
    came: each first token's latency from its request's sending goes to ``ttft``, each
    later token's gap to the one before to ``gaps``."""

    start_at: float
    end_at: float
    ttft: list[float]
    gaps: list[float]
    tokens: int = 0

    def add(self, sent: float, now: float, previous: float | None) -> None:
        if self.start_at <= now <= self.end_at:
            self.tokens += 1
            if previous is None:
                self.ttft.append(now - sent)
            else:
                self.gaps.append(now - previous)

    def add_request(self, sent: float, times: list[float]) -> None:
        """Every token of a request that has finished, in the order they came."""
        for previous, now in zip([None, *times], times, strict=False):
            self.add(sent, now, previous)
