"""The local runner's bookkeeping (no training here): study files, reuse, rows, the CLI report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from loraland.api.progress import ResultScores, TrainingResult
from loraland.api.study import StudySpecError
from loraland.api.studystatus import RunPhase, StudyTable
from loraland.cli import main
from loraland.study.local import (
    RunFiles,
    finished_result,
    job_document,
    local_runs,
    read_study,
    row_from_result,
    save_table,
)

REPO = Path(__file__).resolve().parents[3]


def test_the_local_example_is_one_base_three_tasks_two_variants(tmp_path: Path) -> None:
    name, spec = read_study(REPO / "examples" / "study-local.yaml")
    runs = local_runs(name, spec, tmp_path)
    assert len(runs) == 6 and len({r.variant.name for r in runs if r.variant}) == 2
    assert {r.spec.base_model.uri for r in runs} == {"builtin://smollm2-135m-instruct"}
    # Adapters go under OUT locally, whatever the cluster's output.uri says.
    assert runs[0].spec.output.uri == str(tmp_path / "runs" / runs[0].name / "adapter")
    assert runs[0].spec.lora.rank != runs[1].spec.lora.rank


def test_bad_study_files_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    doc = yaml.safe_load((REPO / "examples" / "study-local.yaml").read_text())
    doc["spec"]["maxParallel"] = 0
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(StudySpecError, match=r"spec.maxParallel: Input should be greater"):
        read_study(path)
    path.write_text("kind: FineTuneJob\n")
    with pytest.raises(StudySpecError, match="not a FineTuneStudy manifest"):
        read_study(path)


def test_a_finished_run_is_reused_only_for_the_same_job(tmp_path: Path) -> None:
    name, spec = read_study(REPO / "examples" / "study-local.yaml")
    run = local_runs(name, spec, tmp_path)[0]
    files = RunFiles(tmp_path / "runs" / run.name)
    files.root.mkdir(parents=True)
    text = job_document(run)
    files.job.write_text(text)
    assert finished_result(files, text) is None  # no result yet
    files.result.write_text('{"event":"error","reason":"DataError","message":"bad"}')
    assert finished_result(files, text) is None  # a failure is not reused
    result = TrainingResult(
        adapter_uri="/a",
        sha256="0",
        size_bytes=1,
        steps=16,
        scores=ResultScores(metric="accuracy", base=0.25, adapter=0.75, samples=20),
    )
    files.result.write_text(result.to_line())
    assert finished_result(files, text) == result
    assert finished_result(files, text.replace("rank: 2", "rank: 3")) is None
    row = row_from_result(run, result, None)
    assert row.phase is RunPhase.SUCCEEDED and row.gain == pytest.approx(0.5)
    failed = row_from_result(run, None, "exit code 2")
    assert failed.phase is RunPhase.FAILED and failed.message == "exit code 2"


def test_report_command_writes_markdown_and_png(tmp_path: Path, table: StudyTable) -> None:
    save_table(table, tmp_path)
    assert main(["study", "report", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "heatmap.png").read_bytes()[:4] == b"\x89PNG"
    assert "## Questions" in (tmp_path / "report.md").read_text()
    (tmp_path / "bad.json").write_text(json.dumps({"study": "x"}))
    assert main(["study", "report", "--results", str(tmp_path / "bad.json")]) == 2


def test_progress_bars_on_a_terminal() -> None:
    import io

    from loraland.api.progress import TrainingProgress
    from loraland.study.local import Display
    from rich.console import Console

    screen = io.StringIO()
    display = Display(
        6, print, tty=True, console=Console(file=screen, force_terminal=True, width=120)
    )
    display.start_run("study-local-smollm2-sentiment-r2")
    display.progress(TrainingProgress(step=3, total_steps=8, epoch=0.1, loss=1.25))
    display.end_run()
    display.close()
    text = screen.getvalue()
    assert "study" in text and "1/6" in text
    assert "3/8" in text and "loss 1.2500" in text
