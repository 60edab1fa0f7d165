"""A study's results table -> the leaderboard and the LoRA Land questions (pure).

Scores are 0..1 on each task's own metric. "Gain" is the adapter's score minus its base
model's score on the same examples (LoRA Land's "lift"). Means are over the runs that
have the score in question; a base model or variant with no scored run has no mean.

The four questions the LoRA Land paper reads off its table are answered from the base
models' labels: which base is best for LoRA (:func:`per_base`), whether size matters
(:func:`by_label` with ``size``), instruction-tuned or not (``instruct``), and where a
general model still wins (:func:`references_ahead`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from statistics import fmean

from loraland.api.studystatus import (
    BaseSummary,
    RunCounts,
    RunPhase,
    RunRow,
    StudyTable,
    TaskSummary,
)


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(fmean(present), 4) if present else None


def counts(rows: Sequence[RunRow]) -> RunCounts:
    found = {phase: sum(1 for r in rows if r.phase is phase) for phase in RunPhase}
    return RunCounts(
        queued=found[RunPhase.QUEUED],
        pending=found[RunPhase.PENDING],
        running=found[RunPhase.RUNNING],
        evaluating=found[RunPhase.EVALUATING],
        succeeded=found[RunPhase.SUCCEEDED],
        failed=found[RunPhase.FAILED],
    )


def scored(rows: Iterable[RunRow]) -> list[RunRow]:
    return [r for r in rows if r.phase is RunPhase.SUCCEEDED and r.adapter_score is not None]


def per_base(table: StudyTable) -> list[BaseSummary]:
    out = []
    for base in table.bases:
        rows = scored(r for r in table.runs if r.base == base.name)
        out.append(
            BaseSummary(
                name=base.name,
                mean_score=_mean(r.adapter_score for r in rows),
                mean_gain=_mean(r.gain for r in rows),
                scored=len(rows),
            )
        )
    return out


def best_base(table: StudyTable) -> str | None:
    """The base model whose adapters score highest on average (ties: the first listed)."""
    ranked = [b for b in per_base(table) if b.mean_score is not None]
    if not ranked:
        return None
    return max(ranked, key=lambda b: b.mean_score or 0.0).name


def _best(rows: Sequence[RunRow]) -> RunRow | None:
    candidates = scored(rows)
    if not candidates:
        return None
    # max keeps the first of equals, so ties go to the earlier base / variant.
    return max(candidates, key=lambda r: r.adapter_score or 0.0)


def per_task(table: StudyTable) -> list[TaskSummary]:
    out = []
    for task in table.tasks:
        rows = [r for r in table.runs if r.task == task]
        best = _best(rows)
        refs = [(ref.name, ref.scores[task]) for ref in table.references if task in ref.scores]
        top_ref = max(refs, key=lambda item: item[1]) if refs else None
        out.append(
            TaskSummary(
                name=task,
                metric=next((r.metric for r in rows if r.metric), None),
                best_run=best.name if best else None,
                best_base=best.base if best else None,
                best_variant=best.variant if best else None,
                best_score=best.adapter_score if best else None,
                best_gain=best.gain if best else None,
                best_reference=top_ref[0] if top_ref else None,
                reference_score=top_ref[1] if top_ref else None,
            )
        )
    return out


@dataclass(frozen=True)
class GroupSummary:
    """Runs grouped by something (a label value, a variant)."""

    key: str
    members: tuple[str, ...]
    mean_score: float | None
    mean_gain: float | None
    scored: int


def _group(
    table: StudyTable, key_of: Callable[[RunRow], str | None], order: Sequence[str]
) -> list[GroupSummary]:
    groups: dict[str, list[RunRow]] = {k: [] for k in order}
    members: dict[str, set[str]] = {k: set() for k in order}
    for row in table.runs:
        key = key_of(row)
        if key is None:
            continue
        groups.setdefault(key, []).append(row)
        members.setdefault(key, set()).add(row.base)
    out = []
    for key, rows in groups.items():
        good = scored(rows)
        out.append(
            GroupSummary(
                key=key,
                members=tuple(sorted(members[key])),
                mean_score=_mean(r.adapter_score for r in good),
                mean_gain=_mean(r.gain for r in good),
                scored=len(good),
            )
        )
    return out


def by_label(table: StudyTable, label: str) -> list[GroupSummary]:
    """Runs grouped by a base-model label (``size``, ``instruct``...); [] if none has it."""
    labels = {b.name: b.labels.get(label) for b in table.bases}
    order = list(dict.fromkeys(v for v in labels.values() if v is not None))
    if not order:
        return []
    return _group(table, lambda r: labels.get(r.base), order)


def by_variant(table: StudyTable) -> list[GroupSummary]:
    if not table.variants:
        return []
    return _group(table, lambda r: r.variant, table.variants)


@dataclass(frozen=True)
class VariantCell:
    task: str
    scores: dict[str, float | None]  # variant -> mean adapter score over the bases

    @property
    def spread(self) -> float | None:
        """Best minus worst variant: the measured difference the LoRA settings make."""
        present = [s for s in self.scores.values() if s is not None]
        return round(max(present) - min(present), 4) if len(present) >= 2 else None


def variants_per_task(table: StudyTable) -> list[VariantCell]:
    out = []
    for task in table.tasks:
        cell = {
            v: _mean(
                r.adapter_score for r in scored(table.runs) if r.task == task and r.variant == v
            )
            for v in table.variants
        }
        out.append(VariantCell(task=task, scores=cell))
    return out


@dataclass(frozen=True)
class ReferenceAhead:
    task: str
    reference: str
    reference_score: float
    best_adapter: float | None


def references_ahead(table: StudyTable) -> list[ReferenceAhead]:
    """Tasks where a reference beats every adapter (or no adapter has a score yet)."""
    out = []
    for summary in per_task(table):
        if summary.best_reference is None or summary.reference_score is None:
            continue
        if summary.best_score is None or summary.reference_score > summary.best_score:
            out.append(
                ReferenceAhead(
                    summary.name,
                    summary.best_reference,
                    summary.reference_score,
                    summary.best_score,
                )
            )
    return out


@dataclass(frozen=True)
class Winner:
    task: str
    run: str
    score: float
    gain: float


@dataclass(frozen=True)
class Skipped:
    task: str
    reason: str


def chosen_base(table: StudyTable, choice: str) -> str | None:
    return best_base(table) if choice == "best" else choice


def winners(table: StudyTable, base: str, min_gain: float) -> tuple[list[Winner], list[Skipped]]:
    """Per task, the best run on ``base`` if it beats the base model by ``min_gain``."""
    chosen, skipped = [], []
    for task in table.tasks:
        best = _best([r for r in table.runs if r.task == task and r.base == base])
        if best is None:
            skipped.append(Skipped(task, "no scored run"))
        elif best.gain is None:
            skipped.append(Skipped(task, f"{best.name} has no base score to compare"))
        elif best.gain + 1e-9 < min_gain:
            skipped.append(
                Skipped(task, f"{best.name} gains {best.gain:+.3f} < minGain {min_gain:.3f}")
            )
        else:
            assert best.adapter_score is not None
            chosen.append(Winner(task, best.name, best.adapter_score, best.gain))
    return chosen, skipped
