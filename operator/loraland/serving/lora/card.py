"""What the admin API tells about an adapter beyond its state: rank, task and scores.

Read once per load from the adapter's own files (PEFT's ``adapter_config.json`` and, when
loraland trained it, ``loraland.json``), so a client such as the playground can show the
leaderboard entry next to the adapter without reaching for the files itself. Torch-free.
An adapter without metadata (trained elsewhere) simply has no task and no scores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from loraland.api.adapter import METADATA_FILE, PEFT_CONFIG_FILE, AdapterMetadata, Scores


@dataclass(frozen=True)
class AdapterCard:
    rank: int | None = None
    task: str | None = None
    scores: Scores | None = None


def read_card(path: Path) -> AdapterCard:
    """The card of the adapter in ``path``; fields its files do not give stay None.

    Never raises for bad files: loading has already validated what serving needs, and a
    card is informational.
    """
    rank = _rank(path / PEFT_CONFIG_FILE)
    meta = _metadata(path / METADATA_FILE)
    if meta is None:
        return AdapterCard(rank=rank)
    task = meta.task or (meta.scores.task if meta.scores else None)
    return AdapterCard(rank=rank, task=task, scores=meta.scores)


def _rank(file: Path) -> int | None:
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    rank = config.get("r") if isinstance(config, dict) else None
    return rank if isinstance(rank, int) and not isinstance(rank, bool) and rank > 0 else None


def _metadata(file: Path) -> AdapterMetadata | None:
    try:
        return AdapterMetadata.model_validate_json(file.read_bytes())
    except (OSError, ValidationError):
        return None
