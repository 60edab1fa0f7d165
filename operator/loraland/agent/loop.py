"""The agent's loop: read the file, stage, load, unload; one :meth:`Agent.step` at a time.

Every step re-reads the mounted file (a ConfigMap volume changes by a symlink swap, so
the content is what counts), asks the server what it has (a restarted server has
nothing), and moves each adapter one step on. Staging runs in a thread (downloads block);
everything else is short HTTP calls to the server beside it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from loraland.agent.servers import AdapterServer
from loraland.agent.stage import StagingError, stage, unlink
from loraland.agent.state import (
    FileError,
    Record,
    apply_file,
    due_for_staging,
    is_ready,
    parse_adapters_file,
    server_lost,
    strays,
)
from loraland.settings import Settings

log = logging.getLogger("loraland.agent")

Runtime = Literal["vllm", "lorax"]


@dataclass
class AgentConfig:
    runtime: Runtime
    adapters_file: Path
    stage_dir: Path
    settings: Settings
    max_lora_rank: int | None = None
    interval_s: float = 2.0
    retry_s: float = 30.0


@dataclass
class Agent:
    config: AgentConfig
    server: AdapterServer
    records: dict[str, Record] = field(default_factory=dict)
    file_read: bool = False
    file_error: str | None = None
    server_up: bool = False
    latched: bool = False
    _unload_next: list[str] = field(default_factory=list)
    #: Names this agent loaded into the server (kept in the stage volume, which outlives
    #: an agent restart), so it unloads only its own adapters.
    owned: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        try:
            self.owned = set(json.loads(self._owned_file.read_text()))
        except (OSError, ValueError, TypeError):
            self.owned = set()

    @property
    def _owned_file(self) -> Path:
        return self.config.stage_dir / ".agent-loaded.json"

    def _own(self, name: str, owned: bool) -> None:
        before = set(self.owned)
        (self.owned.add if owned else self.owned.discard)(name)
        if self.owned != before:
            self.config.stage_dir.mkdir(parents=True, exist_ok=True)
            tmp = self._owned_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(sorted(self.owned)))
            tmp.replace(self._owned_file)

    @property
    def ready(self) -> bool:
        return is_ready(self.records, self.file_read, self.latched)

    def _read_file(self) -> None:
        try:
            entries = parse_adapters_file(self.config.adapters_file.read_text())
        except (OSError, FileError) as exc:
            # Keep serving what we have: a missing or half-written file must not unload all.
            self.file_error = f"{self.config.adapters_file}: {exc}"
            return
        self.file_error = None
        self.file_read = True
        changes = apply_file(self.records, entries)
        self._unload_next = changes.unload
        for name in set(self.records) - set(changes.records):
            if self.config.runtime == "lorax":
                unlink(self.config.stage_dir, name)
        self.records = changes.records

    def _rank_problem(self, rank: int | None) -> str | None:
        limit = self.config.max_lora_rank
        if rank is None or limit is None or rank <= limit:
            return None
        return (
            f"LoRA rank {rank} is above the server's --max-lora-rank {limit}: raise "
            "spec.serving.maxLoraRank (vLLM accepts 1, 8, 16, 32, 64, 128, 256, 320, 512)"
        )

    async def _stage(self, name: str) -> None:
        record = self.records[name]
        try:
            staged = await asyncio.to_thread(
                stage,
                name,
                record.uri,
                self.config.settings,
                self.config.stage_dir,
                link=self.config.runtime == "lorax",
            )
        except StagingError as exc:
            self._set(name, stage="Failed", message=f"staging failed: {exc}", failed_at=now())
            return
        problem = self._rank_problem(staged.rank)
        if problem:
            self._set(name, stage="Failed", message=problem, failed_at=now(), path=staged.path)
            return
        self._set(name, stage="Staged", path=staged.path, message="staged", failed_at=None)

    def _set(self, name: str, **changes: object) -> None:
        record = self.records.get(name)
        if record is not None:  # the file may have dropped it meanwhile
            self.records[name] = replace(record, **changes)  # type: ignore[arg-type]

    async def step(self) -> None:
        self._unload_next = []
        self._read_file()
        for name in due_for_staging(self.records, now(), self.config.retry_s):
            self._set(name, stage="Staging", message="staging")
            await self._stage(name)
        self.server_up = await self.server.healthy()
        if not self.server_up:
            for name, r in self.records.items():
                if r.stage == "Loaded":
                    self._set(name, stage="Staged", message="waiting for the server")
            return
        loaded = await self.server.loaded()
        self.records = server_lost(self.records, loaded)
        for name in sorted({*self._unload_next, *strays(self.records, loaded, self.owned)}):
            error = await self.server.unload(name)
            if error:
                log.warning("unloading %s: %s", name, error)
            else:
                self._own(name, False)
        for name, record in list(self.records.items()):
            if record.stage != "Staged" or record.path is None:
                continue
            error = await self.server.load(name, record.path)
            if error:
                self._set(name, stage="Failed", message=error, failed_at=now())
            else:
                self._own(name, True)
                self._set(name, stage="Loaded", message="loaded")
                log.info("loaded %s from %s", name, record.path)
        if self.ready and not self.latched:
            self.latched = True
            log.info("ready: every required adapter is loaded")

    async def run(self) -> None:
        while True:
            try:
                await self.step()
            except Exception:
                log.exception("agent step failed")
            await asyncio.sleep(self.config.interval_s)


def now() -> float:
    return time.monotonic()
