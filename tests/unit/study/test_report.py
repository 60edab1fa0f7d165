"""The markdown report and the heatmap grid."""

from __future__ import annotations

from pathlib import Path

from loraland.api.studystatus import StudyTable
from loraland.study.plots import heatmap_grid, write_heatmap
from loraland.study.report import report_markdown, results_markdown


def test_report_answers_the_questions(table: StudyTable) -> None:
    text = report_markdown(table, "heatmap.png")
    assert "![adapter score per base model and task](heatmap.png)" in text
    assert "**Which base model is best for LoRA fine-tuning?** `big`" in text
    assert "By `size`: **7b** scores highest on average (71.2, +1.3 points ahead" in text
    assert "By `instruct`: **false**" in text
    assert "hard (gpt-4 90.0 vs best adapter 60.0)" in text
    assert "| big | instruct=false, size=7b | 75.0 | +21.0 | 2 |" in text
    assert "| gpt-4 (reference) | - | 85.0 | - | 2 tasks |" in text
    assert "| s-small-hard | small | hard | Failed | accuracy | - | - | - | 1 |" in text


def test_results_markdown_counts(table: StudyTable) -> None:
    text = results_markdown(table)
    assert "6 runs: 5 succeeded, 1 failed, 0 running, 0 queued." in text


def test_heatmap_rows_are_bases_then_references(table: StudyTable, tmp_path: Path) -> None:
    labels, grid, refs = heatmap_grid(table)
    assert labels == ["big", "chat", "small", "gpt-4 (reference)"]
    assert grid[2] == [0.7, None] and grid[3] == [0.8, 0.9] and refs == 1
    path = write_heatmap(table, tmp_path / "h.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
