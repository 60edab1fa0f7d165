"""Shared by conftest.py and the tests here (a plain module: conftest is not importable)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx

ADAPTERS = ("ad-0", "ad-1")
#: The server admits this many concurrent requests; more users than that get 429s.
MAX_CONCURRENT = 3


@dataclass
class Server:
    url: str
    grpc_target: str
    log: Path

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=10).text
