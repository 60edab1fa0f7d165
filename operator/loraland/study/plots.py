"""The study heatmap: adapter score per (base model [x variant]) row and task column.

Like :mod:`loraland.loadtest.plots`: the Agg backend (files only) and every figure closed.
Rows are base models, or base model / variant pairs when the study compares variants;
references get their own rows below a line, so the paper's GPT-4 row sits beside ours.
"""

from __future__ import annotations

from pathlib import Path

from loraland.api.studystatus import StudyTable
from loraland.study.leaderboard import scored


def heatmap_grid(table: StudyTable) -> tuple[list[str], list[list[float | None]], int]:
    """Row labels, the score grid (None = no score) and how many rows are references."""
    labels: list[str] = []
    grid: list[list[float | None]] = []
    good = scored(table.runs)
    variants: list[str | None] = list(table.variants) or [None]
    for base in table.bases:
        for variant in variants:
            labels.append(base.name if variant is None else f"{base.name} / {variant}")
            row: list[float | None] = []
            for task in table.tasks:
                match = [
                    r.adapter_score
                    for r in good
                    if r.base == base.name and r.task == task and r.variant == variant
                ]
                row.append(match[0] if match else None)
            grid.append(row)
    for ref in table.references:
        labels.append(f"{ref.name} (reference)")
        grid.append([ref.scores.get(t) for t in table.tasks])
    return labels, grid, len(table.references)


def write_heatmap(table: StudyTable, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels, grid, n_refs = heatmap_grid(table)
    values = np.array([[np.nan if v is None else 100 * v for v in row] for row in grid])
    width = max(6.5, 1.1 * len(table.tasks) + 4)
    height = max(2.5, 0.5 * len(labels) + 1.5)
    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_facecolor("#dddddd")  # cells with no score (queued, failed) show grey
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(table.tasks)), table.tasks, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            text = "-" if np.isnan(value) else f"{value:.1f}"
            color = "black" if np.isnan(value) or value > 60 else "white"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=8)
    if n_refs:
        ax.axhline(len(labels) - n_refs - 0.5, color="white", linewidth=3)
    ax.set_title(f"{table.study}: adapter score (%)", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
