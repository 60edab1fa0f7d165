"""The leaderboard and the LoRA Land questions from a results table, as plain values."""

from __future__ import annotations

import pytest
from loraland.api.studystatus import RunPhase, StudyTable
from loraland.study.leaderboard import (
    best_base,
    by_label,
    by_variant,
    counts,
    per_base,
    per_task,
    references_ahead,
    variants_per_task,
    winners,
)

from .conftest import row


def test_counts_by_phase(table: StudyTable) -> None:
    table.runs.append(row("small", "extra", None, phase=RunPhase.QUEUED))
    n = counts(table.runs)
    assert (n.succeeded, n.failed, n.queued, n.running) == (5, 1, 1, 0)


def test_per_base_means_and_best_base(table: StudyTable) -> None:
    bases = {b.name: b for b in per_base(table)}
    assert bases["big"].mean_score == pytest.approx(0.75)
    assert bases["big"].mean_gain == pytest.approx((0.4 + 0.02) / 2)
    assert bases["chat"].mean_score == pytest.approx(0.675)
    assert bases["small"].scored == 1 and bases["small"].mean_score == pytest.approx(0.7)
    assert best_base(table) == "big"


def test_per_task_best_run_and_reference(table: StudyTable) -> None:
    tasks = {t.name: t for t in per_task(table)}
    assert tasks["easy"].best_run == "s-big-easy" and tasks["easy"].best_gain == pytest.approx(0.4)
    assert tasks["hard"].best_base == "big" and tasks["hard"].best_score == 0.6
    assert (tasks["hard"].best_reference, tasks["hard"].reference_score) == ("gpt-4", 0.9)


def test_grouping_by_labels(table: StudyTable) -> None:
    size = {g.key: g for g in by_label(table, "size")}
    assert set(size) == {"7b", "2b"}
    assert size["7b"].members == ("big", "chat") and size["7b"].scored == 4
    assert size["2b"].mean_score == pytest.approx(0.7)
    instruct = {g.key: g for g in by_label(table, "instruct")}
    assert instruct["true"].mean_gain == pytest.approx((0.15 + 0.3) / 2)
    assert by_label(table, "family") == []


def test_reference_beats_every_adapter_only_where_it_does(table: StudyTable) -> None:
    ahead = references_ahead(table)
    assert [(a.task, a.reference, a.best_adapter) for a in ahead] == [("hard", "gpt-4", 0.6)]


def test_winners_respect_min_gain(table: StudyTable) -> None:
    chosen, skipped = winners(table, "big", 0.05)
    assert [(w.task, w.run) for w in chosen] == [("easy", "s-big-easy")]
    assert skipped[0].task == "hard" and "< minGain 0.050" in skipped[0].reason
    chosen, _ = winners(table, "big", 0.0)
    assert [w.task for w in chosen] == ["easy", "hard"]
    chosen, skipped = winners(table, "small", 0.0)
    assert [w.task for w in chosen] == ["easy"] and skipped[0].reason == "no scored run"


def test_variants_per_task_measure_the_difference() -> None:
    table = StudyTable(
        study="v",
        bases=[],
        tasks=["a", "b"],
        variants=["lo", "hi"],
        runs=[
            row("m", "a", 0.5, 0.4, variant="lo"),
            row("m", "a", 0.8, 0.4, variant="hi"),
            row("m", "b", 0.3, 0.3, variant="lo"),
            row("m", "b", None, variant="hi"),
        ],
    )
    cells = {c.task: c for c in variants_per_task(table)}
    assert cells["a"].scores == {"lo": 0.5, "hi": 0.8}
    assert cells["a"].spread == pytest.approx(0.3)
    assert cells["b"].spread is None  # one variant failed: nothing to compare
    groups = {g.key: g for g in by_variant(table)}
    assert groups["hi"].mean_score == 0.8 and groups["lo"].mean_score == pytest.approx(0.4)
