"""Adapter cards (rank, task, scores) and the admin wire model that carries them."""

from __future__ import annotations

import json
from pathlib import Path

from loraland.api.adapter import METADATA_FILE, PEFT_CONFIG_FILE, AdapterMetadata, Scores
from loraland.serving.lora.card import AdapterCard, read_card
from loraland.serving.wire.admin import AdapterList, AdapterOut


def adapter(tmp_path: Path, config: object, meta: object | None) -> Path:
    (tmp_path / PEFT_CONFIG_FILE).write_text(json.dumps(config))
    if meta is not None:
        (tmp_path / METADATA_FILE).write_text(json.dumps(meta))
    return tmp_path


def test_card_reads_rank_and_the_leaderboard_entry(tmp_path: Path) -> None:
    meta = AdapterMetadata(
        name="sentiment",
        base_model="builtin://smollm2-135m-instruct",
        task="sentiment",
        scores=Scores(task="sentiment", metric="accuracy", base=0.41, adapter=0.88, samples=64),
        sha256="0" * 64,
        size_bytes=10,
    )
    path = adapter(tmp_path, {"peft_type": "LORA", "r": 8}, meta.model_dump(mode="json"))
    card = read_card(path)
    assert card.rank == 8 and card.task == "sentiment"
    assert card.scores is not None and (card.scores.base, card.scores.adapter) == (0.41, 0.88)


def test_card_task_falls_back_to_the_scores_task(tmp_path: Path) -> None:
    meta = {
        "name": "x",
        "base_model": "b",
        "sha256": "0",
        "size_bytes": 1,
        "scores": {"task": "math", "metric": "last_number", "adapter": 0.5, "samples": 3},
    }
    card = read_card(adapter(tmp_path, {"r": 4}, meta))
    assert card.task == "math" and card.scores is not None and card.scores.base is None


def test_card_of_an_adapter_trained_elsewhere_has_only_its_rank(tmp_path: Path) -> None:
    assert read_card(adapter(tmp_path, {"peft_type": "LORA", "r": 16}, None)) == AdapterCard(16)


def test_card_never_fails_on_bad_files(tmp_path: Path) -> None:
    (tmp_path / PEFT_CONFIG_FILE).write_text("{not json")
    (tmp_path / METADATA_FILE).write_text('{"name": 1}')
    assert read_card(tmp_path) == AdapterCard()
    assert read_card(adapter(tmp_path, {"r": True}, None)).rank is None
    assert read_card(adapter(tmp_path, [8], None)).rank is None


def test_admin_out_keeps_the_old_fields_and_adds_optional_ones() -> None:
    old = {
        "name": "a1",
        "uri": "/adapters/a1",
        "state": "Loaded",
        "message": "ready",
        "tier": "host",
        "origin": "config",
        "active_requests": 0,
    }
    out = AdapterOut.model_validate(old).model_dump(mode="json")
    assert {k: out[k] for k in old} == old
    assert (out["rank"], out["task"], out["scores"]) == (None, None, None)
    full = AdapterOut.model_validate(
        {
            **old,
            "rank": 8,
            "task": "sentiment",
            "scores": {"task": "sentiment", "metric": "accuracy", "base": 0.4, "adapter": 0.9,
                       "samples": 10},
        }
    )  # fmt: skip
    listed = AdapterList(adapters=[full]).model_dump(mode="json")["adapters"][0]
    assert listed["rank"] == 8 and listed["scores"]["metric"] == "accuracy"
