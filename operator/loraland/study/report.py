"""A study's table -> markdown: the full table (ConfigMap) and the LoRA Land report (pure).

Scores print as percentages with one decimal, gains signed, "-" where there is none.
"""

from __future__ import annotations

from collections.abc import Sequence

from loraland.api.studystatus import RunRow, StudyTable
from loraland.study.leaderboard import (
    GroupSummary,
    best_base,
    by_label,
    by_variant,
    counts,
    per_base,
    per_task,
    references_ahead,
    variants_per_task,
)

#: Labels the report asks its questions about, when the base models carry them.
SIZE_LABEL = "size"
INSTRUCT_LABEL = "instruct"


def pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value * 100:+.1f}" if signed else f"{value * 100:.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right_from: int = 1) -> str:
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def runs_markdown(table: StudyTable) -> str:
    """Every run: one row each, in matrix order."""
    header = ["run", "base", "task"]
    if table.variants:
        header.append("variant")
    header += ["phase", "metric", "base score", "adapter", "gain", "attempts"]

    def row(r: RunRow) -> list[str]:
        cells = [r.name, r.base, r.task] + ([r.variant or "-"] if table.variants else [])
        scores = [pct(r.base_score), pct(r.adapter_score), pct(r.gain, signed=True)]
        return [*cells, r.phase.value, r.metric or "-", *scores, str(r.attempts)]

    return _table(header, [row(r) for r in table.runs], right_from=len(header) - 4)


def _groups_markdown(title: str, groups: Sequence[GroupSummary]) -> str:
    rows = [
        [
            g.key,
            ", ".join(g.members),
            pct(g.mean_score),
            pct(g.mean_gain, signed=True),
            str(g.scored),
        ]
        for g in groups
    ]
    return _table([title, "base models", "mean score", "mean gain", "runs"], rows, right_from=2)


def _answer(groups: Sequence[GroupSummary], what: str) -> str:
    ranked = [g for g in groups if g.mean_score is not None]
    if len(ranked) < 2:
        return f"Not enough scored groups to compare {what}."
    top = max(ranked, key=lambda g: g.mean_score or 0.0)
    rest = [g for g in ranked if g is not top]
    margin = (top.mean_score or 0.0) - max(g.mean_score or 0.0 for g in rest)
    return (
        f"**{top.key}** scores highest on average ({pct(top.mean_score)}, "
        f"{pct(margin, signed=True)} points ahead of the next)."
    )


def base_means_markdown(table: StudyTable) -> str:
    refs = table.references
    header = ["base model", "labels", "mean score", "mean gain over base", "scored runs"]
    rows = []
    labels = {b.name: b.labels for b in table.bases}
    for b in per_base(table):
        tags = ", ".join(f"{k}={v}" for k, v in sorted(labels[b.name].items())) or "-"
        rows.append([b.name, tags, pct(b.mean_score), pct(b.mean_gain, signed=True), str(b.scored)])
    for ref in refs:
        mean = [ref.scores[t] for t in table.tasks if t in ref.scores]
        value = sum(mean) / len(mean) if mean else None
        rows.append([f"{ref.name} (reference)", "-", pct(value), "-", f"{len(mean)} tasks"])
    return _table(header, rows, right_from=2)


def tasks_markdown(table: StudyTable) -> str:
    header = [
        "task",
        "metric",
        "best run",
        "best adapter",
        "its gain",
        "best reference",
        "reference",
    ]
    rows = [
        [
            t.name,
            t.metric or "-",
            t.best_run or "-",
            pct(t.best_score),
            pct(t.best_gain, signed=True),
            t.best_reference or "-",
            pct(t.reference_score),
        ]
        for t in per_task(table)
    ]
    return _table(header, rows, right_from=3)


def variants_markdown(table: StudyTable) -> str:
    cells = variants_per_task(table)
    header = ["task", *table.variants, "difference (best - worst)"]
    rows = [
        [c.task, *[pct(c.scores.get(v)) for v in table.variants], pct(c.spread, signed=True)]
        for c in cells
    ]
    return _table(header, rows)


def results_markdown(table: StudyTable) -> str:
    """The ConfigMap's results.md: summary tables and every run."""
    n = counts(table.runs)
    parts = [
        f"# FineTuneStudy {table.study}",
        "",
        f"{len(table.runs)} runs: {n.succeeded} succeeded, {n.failed} failed, "
        f"{n.running + n.evaluating + n.pending} running, {n.queued} queued. "
        "Scores in % (0-100) on each task's metric; gain = adapter - base model.",
        "",
        "## Base models",
        "",
        base_means_markdown(table),
        "",
        "## Tasks",
        "",
        tasks_markdown(table),
        "",
    ]
    if table.variants:
        parts += ["## LoRA variants", "", variants_markdown(table), ""]
    parts += ["## Runs", "", runs_markdown(table), ""]
    return "\n".join(parts)


def questions_markdown(table: StudyTable) -> str:
    """The LoRA Land questions, answered from the labels on the base models."""
    lines = []
    best = best_base(table)
    lines.append(
        "- **Which base model is best for LoRA fine-tuning?** "
        + (f"`{best}` (highest mean adapter score)." if best else "No scored runs yet.")
    )
    for label, question in (
        (SIZE_LABEL, "Does size matter?"),
        (INSTRUCT_LABEL, "Instruction-tuned or auto-complete base?"),
    ):
        groups = by_label(table, label)
        if not groups:
            lines.append(f"- **{question}** No base model has a `{label}` label.")
            continue
        lines.append(f"- **{question}** By `{label}`: {_answer(groups, label)}")
        lines.append("")
        lines.append(_groups_markdown(label, groups))
        lines.append("")
    ahead = references_ahead(table)
    if not table.references:
        lines.append("- **Where does a general model still win?** No references given.")
    elif not ahead:
        lines.append(
            "- **Where does a general model still win?** Nowhere: on every task with a "
            "reference, some adapter scores higher."
        )
    else:
        items = ", ".join(
            f"{a.task} ({a.reference} {pct(a.reference_score)} vs best adapter "
            f"{pct(a.best_adapter)})"
            for a in ahead
        )
        lines.append(f"- **Where does a general model still win?** {items}.")
    return "\n".join(lines)


def report_markdown(table: StudyTable, heatmap: str | None) -> str:
    """``loraland study report``: the LoRA Land style report."""
    n = counts(table.runs)
    parts = [
        f"# Study report: {table.study}",
        "",
        f"{len(table.bases)} base models x {len(table.tasks)} tasks"
        + (f" x {len(table.variants)} LoRA variants" if table.variants else "")
        + f" = {len(table.runs)} runs ({n.succeeded} succeeded, {n.failed} failed). "
        "Scores in % on each task's metric; gain = adapter - base model on the same examples.",
        "",
    ]
    if heatmap:
        parts += [f"![adapter score per base model and task]({heatmap})", ""]
    parts += [
        "## Questions",
        "",
        questions_markdown(table),
        "",
        "## Mean score per base model",
        "",
        base_means_markdown(table),
        "",
        "## Best per task",
        "",
        tasks_markdown(table),
        "",
    ]
    if table.variants:
        groups = by_variant(table)
        parts += [
            "## LoRA variants",
            "",
            _groups_markdown("variant", groups),
            "",
            "Per task (mean adapter score over the base models):",
            "",
            variants_markdown(table),
            "",
        ]
    parts += ["## Every run", "", runs_markdown(table), ""]
    return "\n".join(parts)
