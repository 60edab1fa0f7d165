"""The agent's bookkeeping, as pure functions over plain data.

Each adapter of the file has a :class:`Record`: ``Staging`` (not on local disk yet),
``Staged`` (on disk, not in the server), ``Loaded`` or ``Failed``. The loop in
:mod:`loraland.agent.loop` does the I/O and moves records along; what to do next and
whether the pod is ready are decided here.

Readiness latches: a pod becomes ready once every *required* adapter is ``Loaded``, and
stays ready when adapters are added or fail later. Otherwise adding one adapter would take
every replica out of the Service at once while it downloads; the new adapter's state is
reported per pod instead (and the operator's status shows it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

Stage = Literal["Staging", "Staged", "Loaded", "Failed"]


class Entry(BaseModel):
    """One adapter of the adapters file (written by loraland.controller.serving)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    uri: str = Field(min_length=1)
    required: bool = True


class FileError(ValueError):
    """The adapters file cannot be used; the agent keeps what it has."""


def parse_adapters_file(text: str) -> list[Entry]:
    """``{adapters: [{name, uri, required?}]}`` or a bare list; names unique."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FileError(f"not YAML: {exc}") from None
    if isinstance(data, dict):
        data = data.get("adapters")
    if data is None:
        return []
    if not isinstance(data, list):
        raise FileError("expected a list of {name, uri} entries")
    try:
        entries = [Entry.model_validate(item) for item in data]
    except ValidationError as exc:
        raise FileError(str(exc)) from None
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise FileError("adapter names must be unique")
    return entries


@dataclass(frozen=True)
class Record:
    uri: str
    required: bool = True
    stage: Stage = "Staging"
    path: str | None = None  # what the server is given, once staged
    message: str = "staging"
    failed_at: float | None = None


@dataclass(frozen=True)
class Changes:
    records: dict[str, Record]  # the new bookkeeping
    unload: list[str]  # names the server must drop (removed, or replaced by a new URI)


def apply_file(records: Mapping[str, Record], entries: Iterable[Entry]) -> Changes:
    """New adapters start Staging; a changed URI restarts its adapter; removed ones go."""
    wanted = {e.name: e for e in entries}
    out: dict[str, Record] = {}
    unload: list[str] = []
    for name, record in records.items():
        entry = wanted.get(name)
        if entry is None or entry.uri != record.uri:
            if record.stage == "Loaded":
                unload.append(name)
            continue
        out[name] = replace(record, required=entry.required)
    for name, entry in wanted.items():
        if name not in out:
            out[name] = Record(uri=entry.uri, required=entry.required)
    return Changes(records=dict(sorted(out.items())), unload=sorted(unload))


def due_for_staging(records: Mapping[str, Record], now: float, retry_s: float) -> list[str]:
    """Adapters to stage now: new ones, and failed ones whose retry time has come."""
    return [
        name
        for name, r in records.items()
        if r.stage == "Staging"
        or (r.stage == "Failed" and r.failed_at is not None and now - r.failed_at >= retry_s)
    ]


def server_lost(records: Mapping[str, Record], loaded: set[str] | None) -> dict[str, Record]:
    """Records the server no longer has (it restarted) go back to Staged to be reloaded.

    ``loaded`` None: the server cannot list its adapters (LoRAX); trust the records.
    """
    if loaded is None:
        return dict(records)
    return {
        n: replace(r, stage="Staged", message="reloading: the server lost it")
        if r.stage == "Loaded" and n not in loaded
        else r
        for n, r in records.items()
    }


def strays(
    records: Mapping[str, Record], loaded: set[str] | None, owned: Iterable[str]
) -> list[str]:
    """Adapters this agent put in the server that the file no longer lists.

    Only ``owned`` ones (the agent's own loads, remembered in the shared volume across
    agent restarts): adapters someone else loaded through the server's API are theirs.
    """
    return sorted((loaded or set()) & set(owned) - set(records))


def waiting_for(records: Mapping[str, Record]) -> list[str]:
    """Required adapters not loaded yet."""
    return [n for n, r in records.items() if r.required and r.stage != "Loaded"]


def is_ready(records: Mapping[str, Record], file_read: bool, latched: bool) -> bool:
    """Ready once the file was read and every required adapter is loaded; then latched."""
    return latched or (file_read and not waiting_for(records))


def reported_state(record: Record) -> Literal["Loaded", "Pending", "Failed"]:
    if record.stage == "Loaded":
        return "Loaded"
    if record.stage == "Failed":
        return "Failed"
    return "Pending"
