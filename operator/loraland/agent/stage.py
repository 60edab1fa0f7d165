"""Staging: an adapter URI -> a directory the server in the same pod can read.

Downloads (``hf://``, ``s3://``) go through :func:`loraland.storage.resolve` with the
agent's cache inside the volume both containers mount, so the staged copy is the
download itself (content-addressed: an ``@revision`` or a changed S3 object gives a new
directory). ``pvc://`` claims are mounted in both containers at the same path, so the
path is handed over as it is. A plain path names a directory in the *server's* image and
is handed over unchecked: the server reports whether it is there.

LoRAX names adapters by path (``adapter_id`` with ``adapter_source=local``), so for it
each adapter also gets a stable link ``<stage>/adapters/<name>`` that clients can send.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from loraland.settings import Settings
from loraland.storage.errors import StorageError
from loraland.storage.resolve import resolve
from loraland.storage.uri import Scheme, parse_uri

CONFIG_FILE = "adapter_config.json"


class StagingError(Exception):
    """The adapter cannot be staged; the message says why."""


@dataclass(frozen=True)
class Staged:
    path: str  # what the server is given
    rank: int | None  # the adapter's largest LoRA rank, when the agent can read it


def link_path(stage_dir: Path, name: str) -> Path:
    return stage_dir / "adapters" / name


def adapter_rank(directory: Path) -> int | None:
    """The largest rank in ``adapter_config.json`` (``r`` and any ``rank_pattern``)."""
    try:
        config = json.loads((directory / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return None
    ranks = [config.get("r"), *(config.get("rank_pattern") or {}).values()]
    ints = [r for r in ranks if isinstance(r, int)]
    return max(ints) if ints else None


def stage(name: str, uri: str, settings: Settings, stage_dir: Path, *, link: bool) -> Staged:
    """Make ``uri`` readable by the server; ``link``: also publish ``<stage>/adapters/<name>``."""
    try:
        parsed = parse_uri(uri)
    except StorageError as exc:
        raise StagingError(str(exc)) from None
    if parsed.scheme is Scheme.BUILTIN:
        raise StagingError(f"{uri} names a base model, not an adapter")
    if parsed.scheme is Scheme.FILE:
        local = Path(parsed.location)
        return Staged(str(local), adapter_rank(local))
    try:
        local = resolve(uri, settings)
    except StorageError as exc:
        raise StagingError(str(exc)) from None
    if not (local / CONFIG_FILE).is_file():
        raise StagingError(f"{uri}: no {CONFIG_FILE} in {local} (not a PEFT adapter)")
    rank = adapter_rank(local)
    if not link:
        return Staged(str(local), rank)
    target = link_path(stage_dir, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{name}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(local, tmp)
    os.replace(tmp, target)  # atomic: a reader sees the old or the new adapter
    return Staged(str(target), rank)


def unlink(stage_dir: Path, name: str) -> None:
    link_path(stage_dir, name).unlink(missing_ok=True)
